package dev.morastream.actors.trainer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.TinyModelFixture;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerCheckpoint;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A trainer whose checkpoints are damaged on disk falls back to the previous kept one, or starts fresh, and says so. */
class DamagedCheckpointTest extends TinyModelFixture {
    static final TopicPartition TP = new TopicPartition("news", 0);
    static final int T = 32;

    @TempDir
    Path tmp;
    ActorRef<AdapterRegistryActor.Command> registry;
    TestProbe<PromotionSupervisor.Command> supervisor;
    TestProbe<MoraEvent.StateRepaired> repaired;
    ActorRef<TrainerActor.Command> trainer;
    long offset;
    long seq;

    @BeforeEach
    void start() {
        supervisor = kit.createTestProbe();
        repaired = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(MoraEvent.StateRepaired.class, repaired.getRef()));
        registry = kit.spawn(AdapterRegistryActor.create(new AdapterRegistry(tmp.resolve("registry"), 10)));
    }

    @AfterEach
    void stop() {
        kit.system().eventStream().tell(new EventStream.Unsubscribe<>(repaired.getRef()));
        if (trainer != null) {
            kit.stop(trainer);
        }
        kit.stop(registry, Duration.ofSeconds(30));
    }

    TrainerActor.Settings settings() {
        return TrainerActor.Settings.of("news", AdapterSpec.mora(8, MoraVariant.ROTATION), TrainerConfig.constant(1e-3),
                        tmp.resolve("ckpt"))
                .withCheckpointEvery(1, null)
                .withLedger(true);
    }

    void spawn() {
        trainer = kit.spawn(TrainerActor.create(settings(), model, tok, registry, supervisor.getRef()), "trainer-" + System.nanoTime(),
                TrainerActor.DISPATCHER);
    }

    TrainBatch text() {
        int[] ids = tok.encode("The capital of Zeuranland is Zequa. The capital of Lolunhalia is Pedre. ");
        int[][] rows = new int[2][T + 1];
        for (int r = 0; r < 2; r++) {
            for (int j = 0; j <= T; j++) {
                rows[r][j] = ids[(j + r * 7) % ids.length];
            }
        }
        return TrainBatch.of(rows);
    }

    TrainerActor.Trained step(String id) throws Exception {
        offset += 10;
        PackedBatch b = new PackedBatch("news", text(), Map.of(), Map.of(TP, ResumePoint.at(offset)), List.of(id), seq++);
        return AskPattern.<TrainerActor.Command, TrainerActor.Trained>askWithStatus(trainer, r -> new TrainerActor.Train(b, r),
                Duration.ofSeconds(30), kit.scheduler()).toCompletableFuture().get(40, TimeUnit.SECONDS);
    }

    void stopTrainer() {
        kit.stop(trainer, Duration.ofSeconds(30));
        trainer = null;
    }

    @Test
    void aCorruptLatestCheckpointFallsBackToThePreviousOneAndTrainsOnFromItsOffsets() throws Exception {
        Path ckpt = tmp.resolve("ckpt");
        spawn();
        step("a");
        step("b");
        step("c"); // checkpoints step-1, -2, -3 (3 kept)
        stopTrainer();
        assertEquals("step-00000003", Files.readString(ckpt.resolve("LATEST")).strip());
        // the latest checkpoint's optimizer file is torn
        Path opt = ckpt.resolve("step-00000003").resolve("optimizer.safetensors");
        Files.write(opt, java.util.Arrays.copyOf(Files.readAllBytes(opt), 100));

        // the stream seeks where the trainer will resume: step 2's offsets
        assertEquals(Map.of(TP, ResumePoint.at(20)), TrainerActor.resumePoints(ckpt));
        assertTrue(Files.isDirectory(ckpt.resolve(TrainerCheckpoint.QUARANTINE).resolve("step-00000003")));
        assertFalse(Files.exists(ckpt.resolve("step-00000003")));
        assertEquals("step-00000002", Files.readString(ckpt.resolve("LATEST")).strip());

        // put it back to see the trainer itself make the same choice and say so
        Files.move(ckpt.resolve(TrainerCheckpoint.QUARANTINE).resolve("step-00000003"), ckpt.resolve("step-00000003"));
        Files.writeString(ckpt.resolve("LATEST"), "step-00000003\n");
        offset = 20;
        spawn();
        MoraEvent.StateRepaired q = repaired.receiveMessage(Duration.ofSeconds(30));
        assertEquals("quarantined", q.action());
        assertTrue(q.file().endsWith("step-00000003"), q.file());
        assertEquals("fallback", repaired.receiveMessage().action());
        TrainerActor.Trained t = step("c");
        assertEquals(3, t.step().step(), "training goes on from step 2");
        assertEquals(Map.of(TP, 30L), t.durableOffsets());
        assertEquals(List.of("a", "b", "c"), TrainerActor.ledger(ckpt), "the ledger was cut back to step 2's, then c retrained once");
    }

    @Test
    void withEveryCheckpointDamagedTheTrainerStartsFreshAndSaysSo() throws Exception {
        Path ckpt = tmp.resolve("ckpt");
        spawn();
        step("a");
        step("b");
        stopTrainer();
        Files.writeString(ckpt.resolve("step-00000001").resolve(TrainerCheckpoint.STATE), "{\"format_version\": 1, \"st");
        Files.delete(ckpt.resolve("step-00000002").resolve("adapter").resolve("adapter_config.json"));
        spawn();
        assertEquals("quarantined", repaired.receiveMessage(Duration.ofSeconds(30)).action());
        assertEquals("quarantined", repaired.receiveMessage().action());
        assertEquals("fresh_start", repaired.receiveMessage().action());
        assertEquals(1, step("x").step().step());
    }

    @Test
    void aCorruptLatestFileFallsBackToTheNewestSoundCheckpoint() throws Exception {
        Path ckpt = tmp.resolve("ckpt");
        spawn();
        step("a");
        step("b");
        stopTrainer();
        Files.write(ckpt.resolve("LATEST"), new byte[] {0, 0, 0, 0});
        assertEquals(Map.of(TP, ResumePoint.at(20)), TrainerActor.resumePoints(ckpt));
        offset = 20;
        spawn();
        assertEquals(3, step("c").step().step());
    }

    @Test
    void aRecordIdWithANewlineIsOneLedgerLineAndTornOrCorruptLinesAreSkipped() throws Exception {
        Path ckpt = Files.createDirectories(tmp.resolve("ledger"));
        Path f = ckpt.resolve("ledger.txt");
        TrainerActor.appendLedger(f, List.of("plain", "two\nlines", "back\\slash", "cr\rhere"));
        assertEquals(4, Files.readAllLines(f).size(), "one line per id");
        assertEquals(List.of("plain", "two\nlines", "back\\slash", "cr\rhere"), TrainerActor.ledger(ckpt));
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        b.writeBytes(Files.readAllBytes(f));
        b.writeBytes(new byte[] {(byte) 0xC3, (byte) 0x28, '\n'}); // not UTF-8
        b.writeBytes("ok\n".getBytes(StandardCharsets.UTF_8));
        b.writeBytes("torn-no-newl".getBytes(StandardCharsets.UTF_8));
        Files.write(f, b.toByteArray());
        assertEquals(List.of("plain", "two\nlines", "back\\slash", "cr\rhere", "ok"), TrainerActor.ledger(ckpt));
    }
}
