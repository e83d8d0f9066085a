package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.assertAllStagesStopped;
import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.replay.ReplayMixer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.apache.pekko.stream.Materializer;
import org.junit.jupiter.api.Test;

/** The training stream with replay on, against the real embedded broker. */
class ReplayStreamTest {
    private static final int T = 63;
    private static final int B = 4;

    @Test
    void replayedRowsAreAddedAndEveryNewRecordIsStillTrainedExactlyOnce() throws Exception {
        Files.createDirectories(Path.of("target"));
        ActorTestKit kit = ActorTestKit.create();
        Materializer mat = Materializer.createMaterializer(kit.system());
        try (EmbeddedKafka kafka = EmbeddedKafka.start(Files.createTempDirectory(Path.of("target"), "kafka-replay-test-"));
                DeadLetters dlq = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), "replay-dlq")) {
            kafka.createTopic("replay", 2);
            kafka.createTopic("replay-dlq", 1);
            int n = 3_000;
            try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(),
                    ProducerConfig.LINGER_MS_CONFIG, 5), new ByteArraySerializer(), new ByteArraySerializer())) {
                for (int i = 0; i < n; i++) {
                    p.send(new ProducerRecord<>("replay", i % 2, null, ("[r" + i + "] record number " + i).getBytes(StandardCharsets.UTF_8)));
                }
                p.flush();
            }
            ReplayMixer replay = new ReplayMixer(new ReplayMixer.Config(0.2, 64, 0.5, 300, 9), new ByteTokenizer(), T);
            Set<String> general = new HashSet<>();
            ReplayMixer.generalRows(new ByteTokenizer(), T, 300, 9).forEach(r -> general.add(Arrays.toString(r)));

            // the test trainer keeps every row; the new ones are those neither seen before nor general
            Set<String> seenRows = new HashSet<>();
            List<Integer> newTokens = new ArrayList<>();
            AtomicLong rows = new AtomicLong();
            AtomicLong replayed = new AtomicLong();
            AtomicLong completed = new AtomicLong();
            CompletableFuture<Void> all = new CompletableFuture<>();
            BatchSink sink = (PackedBatch b) -> {
                synchronized (newTokens) {
                    for (int[] row : b.batch().tokens()) {
                        rows.incrementAndGet();
                        String key = Arrays.toString(row);
                        if (general.contains(key) || !seenRows.add(key)) {
                            replayed.incrementAndGet();
                            continue;
                        }
                        for (int t : row) {
                            if (t != ByteTokenizer.PAD) {
                                newTokens.add(t);
                            }
                        }
                    }
                    if (completed.addAndGet(b.completedIds().size()) >= n) {
                        all.complete(null);
                    }
                }
                return CompletableFuture.completedFuture(b.resumeOffsets());
            };
            TrainingStream.Settings s = new TrainingStream.Settings(kafka.bootstrapServers(), Map.of(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "500"),
                    "replay-g", Set.of("replay"), RecordDecoder.Config.single("law"), T, B, 4, Duration.ofMillis(300));
            Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, s, new ByteTokenizer(), dlq, sink, Map.of(),
                    new StreamStats(), replay);
            await(all, Duration.ofSeconds(60));
            await(control.drainAndShutdown(kit.system().executionContext()), Duration.ofSeconds(60));

            // every record exactly once in the new rows
            List<String> ids = new ArrayList<>();
            int start = -1;
            for (int i = 0; i < newTokens.size(); i++) {
                if (newTokens.get(i) == ByteTokenizer.BOS) {
                    start = i + 1;
                } else if (newTokens.get(i) == ByteTokenizer.EOS && start >= 0) {
                    int[] bytes = newTokens.subList(start, i).stream().mapToInt(Integer::intValue).toArray();
                    Matcher m = Pattern.compile("^\\[(r\\d+)]").matcher(new ByteTokenizer().decode(bytes));
                    assertTrue(m.find());
                    ids.add(m.group(1));
                    start = -1;
                }
            }
            assertEquals(n, ids.size(), "records in new rows");
            assertEquals(n, new HashSet<>(ids).size(), "a record trained twice");
            assertEquals(replay.replayedRows(), replayed.get());
            double share = replayed.get() / (double) rows.get();
            assertTrue(share > 0.1 && share < 0.3, "replayed share " + share);
        } finally {
            assertAllStagesStopped(kit, mat);
            kit.shutdownTestKit();
        }
    }
}
