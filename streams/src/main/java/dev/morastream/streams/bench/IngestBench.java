package dev.morastream.streams.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.morastream.models.corpus.SyntheticCorpus;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.BatchSink;
import dev.morastream.streams.StreamStats;
import dev.morastream.streams.TrainingStream;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.apache.pekko.stream.Materializer;

/**
 * Ingestion benchmark: on an embedded broker, fills a topic with {@code records} JSON values
 * {@code {"text": …}} of about {@code recordBytes} bytes (lines of the base model's synthetic
 * corpus), then reads the whole topic twice in the same run:
 * <ol>
 *   <li>with Kafka's own {@code org.apache.kafka.tools.ConsumerPerformance} in a child JVM (same
 *       java, same classpath), its {@code nMsg.sec};</li>
 *   <li>with {@link TrainingStream} (decode, byte-tokenize, pack) into a sink that only counts and
 *       reports every batch durable, from the call to {@code run} until every record's last token
 *       is in a packed batch.</li>
 * </ol>
 * Both rates include joining the consumer group. The stream's tail is emitted by its idle flush,
 * which adds up to {@link #IDLE_FLUSH} to its time.
 */
public final class IngestBench {
    /** Idle time after which the stream pads and emits its tail (the last records). */
    public static final Duration IDLE_FLUSH = Duration.ofMillis(20);
    private static final Duration TIMEOUT = Duration.ofMinutes(5);
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * @param records N records produced and read by each consumer
     * @param recordBytes approximate size of each value in bytes
     * @param partitions partitions of the topic
     * @param seqLen T of the packed rows
     * @param batchSize B rows per packed batch
     */
    public record Options(int records, int recordBytes, int partitions, int seqLen, int batchSize) {
        public Options {
            if (records < 1 || recordBytes < 16 || partitions < 1 || seqLen < 1 || batchSize < 1) {
                throw new IllegalArgumentException("records >= 1, record bytes >= 16, partitions, seq len and batch size >= 1");
            }
        }

        public static Options of(int records, int recordBytes, int partitions) {
            return new Options(records, recordBytes, partitions, 255, 8);
        }
    }

    /** JSON names (snake case): records, record_bytes, kafka_records_per_s, ours_records_per_s, ratio. */
    public record Result(long records, int recordBytes, double kafkaRecordsPerS, double oursRecordsPerS, double ratio) {}

    private IngestBench() {}

    /** Runs the benchmark with the broker's data (and the child's output) under {@code workDir}. */
    public static Result run(Path workDir, Options o) {
        String topic = "ingest-bench";
        try (EmbeddedKafka kafka = EmbeddedKafka.start(workDir.resolve("kafka"))) {
            kafka.createTopic(topic, o.partitions());
            kafka.createTopic(topic + "-dlq", 1);
            fill(kafka.bootstrapServers(), topic, o);
            double kafkaRate = consumerPerformance(workDir, kafka.bootstrapServers(), topic, o.records());
            double ours = ours(kafka.bootstrapServers(), topic, o);
            return new Result(o.records(), o.recordBytes(), kafkaRate, ours, ours / kafkaRate);
        }
    }

    /** {@code count} distinct JSON values of about {@code bytes} bytes each. */
    static List<byte[]> values(int bytes, int count, long seed) {
        SyntheticCorpus corpus = new SyntheticCorpus(SyntheticWorld.base());
        Random r = new Random(seed);
        List<byte[]> out = new ArrayList<>(count);
        try {
            for (int i = 0; i < count; i++) {
                StringBuilder text = new StringBuilder();
                byte[] v;
                do {
                    text.append(corpus.line(r)).append('\n');
                    v = JSON.writeValueAsBytes(Map.of("text", text.toString()));
                } while (v.length < bytes);
                // cut the text back to the size asked (the line ends are escaped: a little less than cut)
                int over = v.length - bytes;
                String t = text.substring(0, Math.max(1, text.length() - over)).strip();
                out.add(JSON.writeValueAsBytes(Map.of("text", t.isEmpty() ? "x" : t)));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }

    private static void fill(String bootstrap, String topic, Options o) {
        List<byte[]> pool = values(o.recordBytes(), Math.min(o.records(), 1000), 1);
        Map<String, Object> props = Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ProducerConfig.ACKS_CONFIG, "1",
                ProducerConfig.LINGER_MS_CONFIG, 10,
                ProducerConfig.BATCH_SIZE_CONFIG, 256 * 1024);
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            CompletableFuture<Void> failed = new CompletableFuture<>();
            for (int i = 0; i < o.records(); i++) {
                p.send(new ProducerRecord<>(topic, i % o.partitions(), null, pool.get(i % pool.size())), (md, e) -> {
                    if (e != null) {
                        failed.completeExceptionally(e);
                    }
                });
            }
            p.flush();
            if (failed.isCompletedExceptionally()) {
                failed.join();
            }
        }
    }

    /** Kafka's consumer performance tool in a child JVM: its {@code nMsg.sec}. */
    static double consumerPerformance(Path workDir, String bootstrap, String topic, int records) {
        try {
            Path out = workDir.resolve("consumer-performance.out");
            Path err = workDir.resolve("consumer-performance.err");
            Path logback = workDir.resolve("child-logback.xml");
            Files.writeString(logback, """
                    <configuration>
                      <appender name="ERR" class="ch.qos.logback.core.ConsoleAppender"><target>System.err</target>
                        <encoder><pattern>%-5level %logger{24} - %msg%n</pattern></encoder></appender>
                      <root level="WARN"><appender-ref ref="ERR"/></root>
                    </configuration>
                    """);
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            List<String> cmd = List.of(java, "-Xmx1g", "-Dlogback.configurationFile=" + logback.toAbsolutePath(),
                    "-cp", System.getProperty("java.class.path"), "org.apache.kafka.tools.ConsumerPerformance",
                    "--bootstrap-server", bootstrap, "--topic", topic, "--messages", Integer.toString(records),
                    "--group", "bench-kafka-perf", "--timeout", "30000");
            Process proc = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
            if (!proc.waitFor(TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                proc.destroyForcibly();
                throw new IllegalStateException("ConsumerPerformance did not finish within " + TIMEOUT);
            }
            String stdout = Files.readString(out);
            if (proc.exitValue() != 0) {
                throw new IllegalStateException("ConsumerPerformance exited " + proc.exitValue() + ": " + stdout + Files.readString(err));
            }
            return parseRate(stdout);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run ConsumerPerformance", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    /**
     * {@code nMsg.sec} from ConsumerPerformance's output: a header line of comma-separated names
     * ({@code start.time, end.time, …, nMsg.sec, …}) and the line of values after it.
     */
    static double parseRate(String output) {
        String[] lines = output.split("\\R");
        for (int i = 0; i + 1 < lines.length; i++) {
            List<String> names = Arrays.stream(lines[i].split(",")).map(String::trim).toList();
            int col = names.indexOf("nMsg.sec");
            if (col >= 0) {
                String[] values = lines[i + 1].split(",");
                if (values.length == names.size()) {
                    return Double.parseDouble(values[col].trim());
                }
            }
        }
        throw new IllegalStateException("no nMsg.sec in ConsumerPerformance output: " + output);
    }

    /** Records per second of the training stream up to packed batches. */
    private static double ours(String bootstrap, String topic, Options o) {
        Config config = ConfigFactory.parseString("""
                pekko.kafka.consumer.stop-timeout = 0s
                pekko.loglevel = WARNING
                pekko.stdout-loglevel = OFF
                pekko.loggers = ["org.apache.pekko.event.slf4j.Slf4jLogger"]
                pekko.logging-filter = "org.apache.pekko.event.slf4j.Slf4jLoggingFilter"
                """).withFallback(ConfigFactory.load());
        ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "ingest-bench", config);
        try (DeadLetters dlq = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap), topic + "-dlq")) {
            Materializer mat = Materializer.createMaterializer(system);
            AtomicLong packed = new AtomicLong();
            CompletableFuture<Long> allPacked = new CompletableFuture<>();
            BatchSink counting = b -> {
                if (packed.addAndGet(b.completedIds().size()) >= o.records()) {
                    allPacked.complete(System.nanoTime());
                }
                return CompletableFuture.completedFuture(b.resumeOffsets());
            };
            TrainingStream.Settings s = new TrainingStream.Settings(bootstrap,
                    Map.of(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "1000"), "bench-ours", Set.of(topic),
                    new RecordDecoder.Config(Set.of("bench"), "bench", Math.max(1 << 20, 2 * o.recordBytes())),
                    o.seqLen(), o.batchSize(), Runtime.getRuntime().availableProcessors(), IDLE_FLUSH);
            StreamStats stats = new StreamStats();
            long start = System.nanoTime();
            Consumer.DrainingControl<Done> control = TrainingStream.run(system, mat, s, new ByteTokenizer(), dlq, counting,
                    Map.of(), stats);
            long end;
            try {
                end = allPacked.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
            } catch (Exception e) {
                throw new IllegalStateException("the training stream packed " + packed.get() + " of " + o.records()
                        + " records (decoded " + stats.decoded.get() + ", rejected " + stats.rejected.get() + ")", e);
            } finally {
                control.drainAndShutdown(system.executionContext()).toCompletableFuture().orTimeout(30, TimeUnit.SECONDS)
                        .exceptionally(t -> Done.getInstance()).join();
                mat.shutdown();
            }
            return o.records() / ((end - start) / 1e9);
        } finally {
            system.terminate();
            system.getWhenTerminated().toCompletableFuture().orTimeout(30, TimeUnit.SECONDS).exceptionally(t -> Done.getInstance()).join();
        }
    }
}
