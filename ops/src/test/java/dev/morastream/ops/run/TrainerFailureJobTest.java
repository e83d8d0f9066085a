package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.trainer.TrainerActor;
import io.micrometer.core.instrument.Counter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A trainer that fails (here: its checkpoints cannot be written, because a directory squats on the
 * file its LATEST pointer is written through) is restarted from its last checkpoint, the stream is
 * restarted from that checkpoint's offsets, and once the fault is gone every record ends up trained
 * exactly once.
 */
class TrainerFailureJobTest {
    @TempDir
    Path dir;

    @Test
    void aFailingTrainerRestartsFromItsCheckpointAndTheStreamFromItsOffsets() throws Exception {
        Path data = dir.resolve("data");
        Map<String, Object> o = MoraJobTest.settings(data);
        o.put("morastream.trainer.checkpoint-every-steps", 5);
        o.put("morastream.trainer.checkpoint-every", "2s");
        o.put("morastream.evaluator.tasks-per-set", 1);
        o.put("morastream.stream.restart-backoff", "500ms");
        Path ckpt = data.resolve("checkpoints").resolve(MoraJobTest.DOMAIN);
        Path blocker = ckpt.resolve("LATEST.tmp");
        Files.createDirectories(blocker.resolve("squatter")); // AtomicFiles.write(LATEST) cannot create LATEST.tmp
        JobConfig cfg = JobConfig.load(null, o, Path.of("..").toAbsolutePath().normalize());
        try (MoraJob job = MoraJob.start(cfg)) {
            Set<String> produced = new HashSet<>();
            try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
                    job.bootstrapServers()), new StringSerializer(), new StringSerializer())) {
                for (int i = 0; i < 150; i++) {
                    String id = "t-" + i;
                    p.send(new ProducerRecord<>(MoraJobTest.TOPIC, "{\"id\": \"" + id + "\", \"text\": \"Record " + i
                            + " says that the capital of Zorbland is Quixotta.\"}"));
                    produced.add(id);
                }
            }
            Counter failures = job.metrics().registry().get("mora.train.failures").tag("reason", "exception").counter();
            Counter restarts = job.metrics().registry().get("mora.stream.restarts").counter();
            MoraJobTest.await("a trainer failure and a stream restart", Duration.ofMinutes(2),
                    () -> failures.count() >= 1 && restarts.count() >= 1);
            // the fault goes away: training goes on from the last sound checkpoint (a step directory written before
            // LATEST could not be; without one, the beginning) and the stream from its offsets
            Files.delete(blocker.resolve("squatter"));
            Files.delete(blocker);
            MoraJobTest.await("every record in a checkpoint", Duration.ofMinutes(3), () -> MoraJobTest.ledger(ckpt).size() >= produced.size());
            List<String> ids = TrainerActor.ledger(ckpt);
            assertEquals(produced.size(), ids.size(), "records lost or trained twice");
            assertEquals(produced, new HashSet<>(ids));
            assertTrue(job.stats().recordsTrained.get() >= produced.size(), "records trained: " + job.stats().recordsTrained.get());
            assertTrue(restarts.count() >= 1 && failures.count() >= 1, "the stream restarted after the trainer failed");
        }
    }
}
