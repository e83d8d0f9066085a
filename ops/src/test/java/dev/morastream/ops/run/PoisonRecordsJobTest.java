package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.streams.records.DeadLetterTopic;
import dev.morastream.streams.records.DeadLetters;
import io.micrometer.core.instrument.Counter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The report of issue 12, with the real job on its embedded broker (default limits: 1 MiB records,
 * {@code message.max.bytes} 1048588): a gzip record just over the record limit and a near-limit
 * record of invalid UTF-8 used to fail the dead-letter write, so the stream restarted every 2 s
 * forever and nothing after them trained. Now both are dead-lettered once (cut to fit), the stream
 * never restarts, and the records after them are trained.
 */
class PoisonRecordsJobTest {
    /** The bound within which the records produced after the poison ones must be in a checkpoint. */
    private static final Duration TRAINED_WITHIN = Duration.ofMinutes(3);

    @TempDir
    Path dir;

    @Test
    void oversizedAndNearLimitRecordsAreDeadLetteredOnceAndTrainingGoesOn() throws Exception {
        Path data = dir.resolve("data");
        Map<String, Object> o = MoraJobTest.settings(data);
        o.put("morastream.trainer.checkpoint-every-steps", 5);
        o.put("morastream.trainer.checkpoint-every", "2s");
        o.put("morastream.evaluator.tasks-per-set", 1);
        o.put("morastream.stream.restart-backoff", "500ms");
        JobConfig cfg = JobConfig.load(null, o, Path.of("..").toAbsolutePath().normalize());
        int limit = cfg.stream().decoder().maxBytes();
        try (MoraJob job = MoraJob.start(cfg)) {
            String bootstrap = job.bootstrapServers();
            byte[] gzipped = ("{\"text\": \"" + "the same words again and again ".repeat(limit / 30 + 100) + "\"}")
                    .getBytes(StandardCharsets.UTF_8);
            assertTrue(gzipped.length > limit);
            byte[] invalid = ("x".repeat(limit - 200)).getBytes(StandardCharsets.UTF_8); // fits the broker whole, not with headers
            invalid[100] = (byte) 0xff;
            try (KafkaProducer<byte[], byte[]> gzip = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                    ProducerConfig.COMPRESSION_TYPE_CONFIG, "gzip", ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 * limit),
                    new ByteArraySerializer(), new ByteArraySerializer());
                 KafkaProducer<byte[], byte[]> plain = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                    ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 2 * limit), new ByteArraySerializer(), new ByteArraySerializer())) {
                gzip.send(new ProducerRecord<>(MoraJobTest.TOPIC, 0, null, gzipped)).get();
                plain.send(new ProducerRecord<>(MoraJobTest.TOPIC, 0, null, invalid)).get();
                for (int i = 0; i < 40; i++) {
                    plain.send(new ProducerRecord<>(MoraJobTest.TOPIC, i % 2, null, ("{\"id\": \"after-" + i + "\", \"text\": \"Record " + i
                            + " says that the capital of Zorbland is Quixotta.\"}").getBytes(StandardCharsets.UTF_8))).get();
                }
            }
            Path ckpt = job.config().checkpoints(MoraJobTest.DOMAIN);
            MoraJobTest.await("the records after the poison ones in a checkpoint", TRAINED_WITHIN, () -> MoraJobTest.ledger(ckpt).size() >= 40);
            List<String> ids = MoraJobTest.ledger(ckpt);
            assertEquals(40, ids.size());
            assertEquals(40, new HashSet<>(ids).size(), "a record was trained twice");

            Counter restarts = job.metrics().registry().get("mora.stream.restarts").counter();
            assertEquals(0.0, restarts.count(), "the stream restarted (mora_stream_restarts_total)");
            List<DeadLetterTopic.Letter> letters = DeadLetterTopic.read(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap),
                    cfg.kafka().deadLetterTopic(), Duration.ofSeconds(30));
            Map<String, DeadLetterTopic.Letter> byReason = letters.stream().collect(Collectors.toMap(DeadLetterTopic.Letter::reason, l -> l));
            assertEquals(Set.of("too-large", "invalid-utf8"), byReason.keySet(), "one letter each: " + letters);
            assertEquals(2, letters.size());
            for (DeadLetterTopic.Letter l : letters) {
                assertEquals("value", l.truncated(), l.reason() + " cut to fit");
                assertEquals(cfg.kafka().groupId(), l.group());
                assertTrue(DeadLetters.header(l.record(), DeadLetters.ORIGINAL_SHA256).matches("[0-9a-f]{64}"));
            }
            assertEquals(gzipped.length, byReason.get("too-large").size());
            assertEquals(invalid.length, byReason.get("invalid-utf8").size());
            assertEquals(2, job.stats().rejected.get());
        }
    }
}
