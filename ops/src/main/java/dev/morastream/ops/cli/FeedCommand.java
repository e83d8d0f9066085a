package dev.morastream.ops.cli;

import java.io.BufferedReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** Produces files into a Kafka topic, one record per line. */
@Command(name = "feed", mixinStandardHelpOptions = true,
        description = {"Produce files into a Kafka topic, one record per non-empty line.",
            "text: the line is the record's text; jsonl: the line is sent as it is, e.g. {\"text\": ...} or {\"prompt\": ..., \"completion\": ...}.",
            "Waits for every acknowledgement (acks=all, idempotent) and prints progress."})
public final class FeedCommand implements Callable<Integer> {
    @Option(names = "--bootstrap-servers", required = true, description = "Kafka bootstrap servers, host:port[,host:port].")
    String bootstrap;

    @Option(names = "--topic", required = true, description = "Topic to produce to.")
    String topic;

    @Option(names = "--format", defaultValue = "text", description = "text or jsonl (default ${DEFAULT-VALUE}).")
    String format;

    @Option(names = "--domain", description = "Domain, sent as the record key and a 'domain' header.")
    String domain;

    @Option(names = "--producer-config", paramLabel = "KEY=VALUE",
            description = "Extra producer settings (repeatable), e.g. security.protocol=SASL_SSL.")
    Map<String, String> extra = new java.util.LinkedHashMap<>();

    @Parameters(paramLabel = "FILE", arity = "1..*", description = "Files to produce.")
    List<Path> files;

    @Override
    public Integer call() throws Exception {
        if (!format.equals("text") && !format.equals("jsonl")) {
            throw new IllegalArgumentException("--format must be text or jsonl, got '" + format + "'");
        }
        for (Path f : files) {
            if (!Files.isRegularFile(f)) {
                throw new IllegalArgumentException("no such file: " + f);
            }
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.putAll(extra);
        AtomicLong acked = new AtomicLong();
        AtomicReference<Exception> failure = new AtomicReference<>();
        long sent = 0;
        long t0 = System.nanoTime();
        byte[] key = domain == null ? null : domain.getBytes(StandardCharsets.UTF_8);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (Path f : files) {
                try (BufferedReader r = Files.newBufferedReader(f, StandardCharsets.UTF_8)) {
                    String line;
                    while ((line = r.readLine()) != null && failure.get() == null) {
                        if (line.isBlank()) {
                            continue;
                        }
                        ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, key, line.getBytes(StandardCharsets.UTF_8));
                        if (domain != null) {
                            rec.headers().add(new RecordHeader("domain", key));
                        }
                        producer.send(rec, (md, e) -> {
                            if (e != null) {
                                failure.compareAndSet(null, e);
                            } else {
                                acked.incrementAndGet();
                            }
                        });
                        sent++;
                        if (sent % 10_000 == 0) {
                            progress(sent, acked.get(), t0);
                        }
                    }
                }
            }
            producer.flush();
        }
        progress(sent, acked.get(), t0);
        if (failure.get() != null) {
            throw new IllegalStateException("producing to " + topic + " failed after " + acked.get() + " acknowledged records: "
                    + failure.get().getMessage(), failure.get());
        }
        return 0;
    }

    private static void progress(long sent, long acked, long t0) {
        double s = (System.nanoTime() - t0) / 1e9;
        System.err.printf(Locale.ROOT, "fed %,d records (%,d acknowledged) in %.1f s, %,.0f records/s%n", sent, acked, s, acked / Math.max(s, 1e-9));
    }
}
