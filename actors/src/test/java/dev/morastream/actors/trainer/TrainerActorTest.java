package dev.morastream.actors.trainer;

import dev.morastream.actors.TinyModelFixture;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.evaluator.Sample;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.streams.BatchSink;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The trainer on the shipped tiny model: checkpoints, candidates, restart from checkpoint after failures, lr back-off. */
class TrainerActorTest extends TinyModelFixture {
    static final TopicPartition TP = new TopicPartition("news", 0);
    static final int T = 32;


    @TempDir
    Path tmp;
    TestProbe<PromotionSupervisor.Command> supervisor;
    ActorRef<AdapterRegistryActor.Command> registry;
    ActorRef<TrainerActor.Command> trainer;
    long seq;
    long offset;


    @BeforeEach
    void start() {
        supervisor = kit.createTestProbe();
        registry = kit.spawn(AdapterRegistryActor.create(new AdapterRegistry(tmp.resolve("registry"), 5)));
    }

    @AfterEach
    void stop() {
        if (trainer != null) {
            kit.stop(trainer); // PostStop frees the adapter
        }
        // the registry publishes asynchronously: let it finish writing before @TempDir is deleted
        kit.stop(registry, Duration.ofSeconds(30));
    }

    TrainerActor.Settings settings(int everySteps, int warmup) {
        return TrainerActor.Settings.of("news", AdapterSpec.mora(8, MoraVariant.ROTATION), TrainerConfig.constant(1e-3),
                        tmp.resolve("ckpt"))
                .withCheckpointEvery(everySteps, null)
                .withDivergence(3.0, warmup, 2, 0.5);
    }

    BatchSink spawn(TrainerActor.Settings s) {
        return spawn(s, null);
    }

    BatchSink spawn(TrainerActor.Settings s, CheckpointReplica replica) {
        trainer = kit.spawn(TrainerActor.create(s, model, tok, registry, supervisor.getRef(), replica), "trainer-" + System.nanoTime(),
                TrainerActor.DISPATCHER);
        return TrainerActor.sink(trainer, Duration.ofSeconds(20), kit.scheduler(), kit.system().executionContext());
    }

    /** Two rows of "Q: ... A: ..." facts, BOS/EOS framed, completion-masked, as the packer cuts them. */
    TrainBatch facts() {
        int[][] rows = new int[2][];
        float[][] mask = new float[2][T];
        for (int r = 0; r < 2; r++) {
            int[] rec = concat(new int[] {tok.bos()}, tok.encode("Q: Zorbland?\nA:"), tok.encode(" Quix" + r), new int[] {tok.eos().iterator().next()});
            int promptEnd = 1 + tok.encode("Q: Zorbland?\nA:").length; // first completion token
            rows[r] = new int[T + 1];
            for (int j = 0; j <= T; j++) {
                int k = j % rec.length;
                rows[r][j] = rec[k];
                if (j > 0) {
                    mask[r][j - 1] = k >= promptEnd ? 1f : 0f;
                }
            }
        }
        return new TrainBatch(rows, null, mask);
    }

    static int[] concat(int[]... parts) {
        int[] out = new int[Arrays.stream(parts).mapToInt(p -> p.length).sum()];
        int at = 0;
        for (int[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    /** Rows of the shipped model's own kind of text (low loss). */
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

    PackedBatch packed(TrainBatch b, String... completedIds) {
        offset += 10;
        return new PackedBatch("news", b, Map.of(), Map.of(TP, ResumePoint.at(offset)), List.of(completedIds), seq++);
    }

    static TrainerActor.Trained train(BatchSink sink, PackedBatch b) throws Exception {
        Map<TopicPartition, Long> durable = sink.accept(b).toCompletableFuture().get(30, TimeUnit.SECONDS);
        return new TrainerActor.Trained(null, durable, java.util.Optional.empty());
    }

    @Test
    void checkpointsPublishCandidatesAndAFailedBatchRestartsFromTheLastCheckpoint() throws Exception {
        BatchSink sink = spawn(settings(2, 1000));
        assertEquals(Map.of(), train(sink, packed(facts())).durableOffsets());
        // the second step checkpoints: its offsets become durable and a candidate is published
        assertEquals(Map.of(TP, 20L), train(sink, packed(text())).durableOffsets());
        PromotionSupervisor.CandidateReady c = supervisor.expectMessageClass(PromotionSupervisor.CandidateReady.class);
        assertEquals("news@v1", c.version().toString());
        assertEquals(2, c.step());
        assertTrue(Double.isFinite(c.progressiveLoss()));
        List<Sample.Fact> facts = c.sample().facts();
        assertFalse(facts.isEmpty(), "facts sampled from the completion-masked rows");
        assertEquals("Q: Zorbland?\nA:", facts.get(0).prompt());
        assertTrue(facts.get(0).completion().startsWith(" Quix"), facts.get(0).completion());
        assertEquals(Map.of(TP, ResumePoint.at(20)), TrainerActor.resumePoints(tmp.resolve("ckpt")));

        assertEquals(Map.of(), train(sink, packed(text())).durableOffsets()); // step 3, not saved

        // a NaN loss (NaN target mask) fails the batch; supervision restarts the trainer from step 2
        int[][] rows = text().tokens();
        float[][] nan = new float[2][T];
        for (float[] r : nan) {
            Arrays.fill(r, Float.NaN);
        }
        Exception e = assertThrows(Exception.class, () -> train(sink, packed(new TrainBatch(rows, nan, null))));
        assertTrue(rootMessage(e).contains("non-finite loss"), rootMessage(e));

        // it goes on from its checkpoint: the next step is step 3 again, and step 4 checkpoints
        BatchSink again = TrainerActor.sink(trainer, Duration.ofSeconds(20), kit.scheduler(), kit.system().executionContext());
        var r3 = askStep(packed(text()));
        assertEquals(3, r3.step().step());
        var r4 = askStep(packed(text()));
        assertEquals(4, r4.step().step());
        assertTrue(r4.checkpoint().isPresent());
        assertEquals("news@v2", supervisor.expectMessageClass(PromotionSupervisor.CandidateReady.class).version().toString());

        // an exception inside the step (token id outside the vocabulary) is a failure too
        int[][] bad = text().tokens();
        bad[0][3] = 100_000;
        Exception e2 = assertThrows(Exception.class, () -> train(again, packed(TrainBatch.of(bad))));
        assertTrue(rootMessage(e2).contains("step failed"), rootMessage(e2));
        assertEquals(5, askStep(packed(text())).step().step());
    }

    @Test
    void repeatedDivergenceLowersTheLearningRate() throws Exception {
        BatchSink sink = spawn(settings(1, 2));
        Random rnd = new Random(1);
        for (int round = 0; round < 2; round++) {
            train(sink, packed(text()));
            train(sink, packed(text()));
            // random bytes after the model's own text: far above 3x the running mean
            int[][] noise = new int[2][T + 1];
            for (int[] r : noise) {
                for (int j = 0; j < r.length; j++) {
                    r[j] = rnd.nextInt(256);
                }
            }
            Exception e = assertThrows(Exception.class, () -> train(sink, packed(TrainBatch.of(noise))));
            assertTrue(rootMessage(e).contains("loss diverged"), rootMessage(e));
        }
        // two divergences: the learning rate is halved, and the checkpoints remember it
        assertEquals(0.5e-3, askStep(packed(text())).step().lr(), 1e-12);
        assertEquals(0.5e-3, askStep(packed(text())).step().lr(), 1e-12);
    }

    @Test
    void aQuietTrainerCheckpointsOnItsTimerAndReportsTheOffsetsWithTheNextBatch() throws Exception {
        BatchSink sink = spawn(settings(1000, 1000).withCheckpointEvery(1000, Duration.ofMillis(200)));
        assertEquals(Map.of(), train(sink, packed(text())).durableOffsets());
        PromotionSupervisor.CandidateReady c = supervisor.expectMessageClass(PromotionSupervisor.CandidateReady.class, Duration.ofSeconds(10));
        assertEquals(1, c.step());
        // nothing new trained: the timer writes no further checkpoint
        supervisor.expectNoMessage(Duration.ofMillis(500));
        // the timer's checkpoint holds offset 10; the stream hears of it with the next reply
        assertEquals(Map.of(TP, 10L), train(sink, packed(text())).durableOffsets());
    }

    @Test
    void theLedgerNamesExactlyTheRecordsOfTheLatestCheckpoint() throws Exception {
        BatchSink sink = spawn(settings(2, 1000).withLedger(true));
        Path ckpt = tmp.resolve("ckpt");
        train(sink, packed(text(), "a", "b"));
        assertEquals(List.of(), TrainerActor.ledger(ckpt), "nothing is in a checkpoint yet");
        train(sink, packed(text(), "c"));
        assertEquals(List.of("a", "b", "c"), TrainerActor.ledger(ckpt));
        train(sink, packed(text(), "d")); // step 3: not checkpointed
        // a failure restarts from step 2: "d" was lost with the state that learned it
        int[][] bad = text().tokens();
        bad[0][3] = 100_000;
        assertThrows(Exception.class, () -> train(sink, packed(TrainBatch.of(bad), "x")));
        train(sink, packed(text(), "d")); // retrained (the stream replays it)
        train(sink, packed(text(), "e")); // step 4: checkpoint
        assertEquals(List.of("a", "b", "c", "d", "e"), TrainerActor.ledger(ckpt));
        kit.stop(trainer);
        // a crash between the ledger's append and the checkpoint's rename: the next start cuts the ledger back
        java.nio.file.Files.writeString(ckpt.resolve("ledger.txt"), "f\ng\n", java.nio.file.StandardOpenOption.APPEND);
        spawn(settings(2, 1000).withLedger(true));
        askStep(packed(text()));
        assertEquals(List.of("a", "b", "c", "d", "e"), TrainerActor.ledger(ckpt));
    }

    @Test
    void anExportedCheckpointOutlivesItsDiskAndANewNodeResumesFromIt() throws Exception {
        CheckpointReplica replica = new CheckpointReplica(new dev.morastream.streams.state.InMemoryStateStore());
        BatchSink sink = spawn(settings(2, 1000).withLedger(true), replica);
        train(sink, packed(text(), "a", "b"));
        train(sink, packed(text(), "c")); // step 2: checkpoint, exported
        train(sink, packed(text(), "d")); // step 3: only in memory
        kit.stop(trainer);
        assertEquals(java.util.Optional.of(2L), replica.exportedStep("news"));
        // the same disk: nothing to restore (it has that checkpoint)
        assertTrue(replica.restore("news", tmp.resolve("ckpt")).isEmpty());

        // another node, an empty disk: it restores the checkpoint, its offsets and its ledger, and goes on from step 3
        Path other = tmp.resolve("other-node");
        assertEquals("step-00000002", replica.restore("news", other).orElseThrow().getFileName().toString());
        assertEquals(TrainerActor.resumePoints(tmp.resolve("ckpt")), TrainerActor.resumePoints(other));
        assertEquals(List.of("a", "b", "c"), TrainerActor.ledger(other));
        BatchSink there = spawn(TrainerActor.Settings.of("news", AdapterSpec.mora(8, MoraVariant.ROTATION), TrainerConfig.constant(1e-3),
                other).withCheckpointEvery(2, null).withDivergence(3.0, 1000, 2, 0.5).withLedger(true), replica);
        assertEquals(3, askStep(packed(text(), "d")).step().step());
        train(there, packed(text(), "e")); // step 4: checkpoint, exported from the new node
        assertEquals(List.of("a", "b", "c", "d", "e"), TrainerActor.ledger(other));
        assertEquals(java.util.Optional.of(4L), replica.exportedStep("news"));
        // the old disk is behind now: it restores the newer export
        assertEquals("step-00000004", replica.restore("news", tmp.resolve("ckpt")).orElseThrow().getFileName().toString());
        assertEquals(List.of("a", "b", "c", "d", "e"), TrainerActor.ledger(tmp.resolve("ckpt")));
    }

    @Test
    void aFlushCheckpointsWhatWasTrainedAndReportsItsOffsets() throws Exception {
        BatchSink sink = spawn(settings(1000, 1000));
        assertEquals(Map.of("news", Map.of()), sink.flush().toCompletableFuture().get(30, TimeUnit.SECONDS));
        train(sink, packed(text()));
        train(sink, packed(text()));
        assertEquals(Map.of("news", Map.of(TP, 20L)), sink.flush().toCompletableFuture().get(30, TimeUnit.SECONDS));
        assertEquals(Map.of(TP, ResumePoint.at(20)), TrainerActor.resumePoints(tmp.resolve("ckpt")));
        assertEquals("news@v1", supervisor.expectMessageClass(PromotionSupervisor.CandidateReady.class).version().toString());
        // nothing new: no checkpoint, the same offsets
        assertEquals(Map.of("news", Map.of(TP, 20L)), sink.flush().toCompletableFuture().get(30, TimeUnit.SECONDS));
        supervisor.expectNoMessage(Duration.ofMillis(300));
    }

    TrainerActor.Trained askStep(PackedBatch b) throws Exception {
        return org.apache.pekko.actor.typed.javadsl.AskPattern.<TrainerActor.Command, TrainerActor.Trained>askWithStatus(
                        trainer, r -> new TrainerActor.Train(b, r), Duration.ofSeconds(20), kit.scheduler())
                .toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && (t instanceof CompletionException || t instanceof java.util.concurrent.ExecutionException)) {
            t = t.getCause();
        }
        return String.valueOf(t.getMessage());
    }
}
