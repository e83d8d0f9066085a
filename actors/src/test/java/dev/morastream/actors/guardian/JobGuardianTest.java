package dev.morastream.actors.guardian;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.TinyModelFixture;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.supervisor.PromotionDecision;
import dev.morastream.actors.supervisor.PromotionPolicy;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.actors.trainer.TrainerActor;
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
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The guardian on the shipped tiny model: it owns two domains' trainers, moves aliases, reports, and stops them with final checkpoints. */
class JobGuardianTest extends TinyModelFixture {
    static final int T = 32;
    static final Duration WAIT = Duration.ofSeconds(60);

    @TempDir
    Path tmp;
    ActorRef<JobGuardian.Command> guardian;
    final BlockingQueue<MoraEvent> events = new LinkedBlockingQueue<>();
    final BlockingQueue<PromotionSupervisor.Promoted> promoted = new LinkedBlockingQueue<>();
    final CompletableFuture<String> lost = new CompletableFuture<>();
    long offset;

    @AfterEach
    void stop() {
        if (guardian != null) {
            kit.stop(guardian, WAIT);
        }
    }

    ActorRef<JobGuardian.Command> spawn(int checkpointEvery) {
        List<JobGuardian.Domain> domains = List.of("alpha", "beta").stream().map(d -> new JobGuardian.Domain(
                TrainerActor.Settings.of(d, AdapterSpec.mora(8, MoraVariant.SHARING), TrainerConfig.constant(1e-3), tmp.resolve("ckpt-" + d))
                        .withCheckpointEvery(checkpointEvery, null), model)).toList();
        // a gate no candidate passes: every move of an alias here is the admin's
        JobGuardian.Settings s = new JobGuardian.Settings(domains, model, tok, new EvaluatorActor.Settings(List.of(), "", 64, 4),
                new AdapterRegistry(tmp.resolve("registry"), 5), null, d -> new PromotionPolicy(1e9, 0, 0), tmp.resolve("audit.jsonl"),
                Duration.ofSeconds(60));
        guardian = kit.spawn(JobGuardian.create(s, new JobGuardian.Hooks() {
            @Override
            public void onEvent(MoraEvent event) {
                events.add(event);
            }

            @Override
            public void onPromoted(PromotionSupervisor.Promoted p) {
                promoted.add(p);
            }

            @Override
            public void onTrainerLost(String domain) {
                lost.complete(domain);
            }
        }), "guardian-" + System.nanoTime());
        return guardian;
    }

    Map<String, ActorRef<TrainerActor.Command>> trainers() throws Exception {
        return AskPattern.<JobGuardian.Command, Map<String, ActorRef<TrainerActor.Command>>>ask(guardian, JobGuardian.GetTrainers::new,
                WAIT, kit.scheduler()).toCompletableFuture().get(60, TimeUnit.SECONDS);
    }

    PackedBatch batch(String domain, float maskValue) {
        int[] ids = tok.encode("The capital of Zeuranland is Zequa. The capital of Lolunhalia is Pedre. ");
        int[][] rows = new int[2][T + 1];
        float[][] mask = new float[2][T];
        for (int r = 0; r < 2; r++) {
            for (int j = 0; j <= T; j++) {
                rows[r][j] = ids[(j + r * 7) % ids.length];
            }
            Arrays.fill(mask[r], maskValue);
        }
        offset += 10;
        TopicPartition tp = new TopicPartition("in", domain.equals("alpha") ? 0 : 1);
        return new PackedBatch(domain, new TrainBatch(rows, mask, null), Map.of(), Map.of(tp, ResumePoint.at(offset)), List.of(), offset);
    }

    BatchSink sink() throws Exception {
        return TrainerActor.sink(trainers(), Duration.ofSeconds(30), kit.scheduler(), kit.system().executionContext());
    }

    @Test
    void ownsOneTrainerPerDomainAndStopsThemWithFinalCheckpoints() throws Exception {
        spawn(1000);
        assertEquals(List.of("alpha", "beta"), trainers().keySet().stream().sorted().toList());
        BatchSink sink = sink();
        sink.accept(batch("alpha", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS);
        sink.accept(batch("alpha", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS);

        TestProbe<JobGuardian.Stopped> probe = kit.createTestProbe();
        guardian.tell(new JobGuardian.Stop(WAIT, probe.getRef()));
        JobGuardian.Stopped stopped = probe.expectMessageClass(JobGuardian.Stopped.class, WAIT);
        assertEquals(Map.of(), stopped.failed());
        assertTrue(stopped.finalCheckpoints().get("alpha").isPresent(), "alpha trained two steps: a final checkpoint");
        assertTrue(stopped.finalCheckpoints().get("beta").isEmpty(), "beta trained nothing: nothing to write");
        assertEquals(Map.of(new TopicPartition("in", 0), ResumePoint.at(20)), TrainerActor.resumePoints(tmp.resolve("ckpt-alpha")));
        // the trainers' events reached the hooks through the event stream
        assertTrue(waitFor(e -> e instanceof MoraEvent.Checkpointed c && c.domain().equals("alpha")), "checkpoint event heard");
        assertFalse(lost.isDone(), "a trainer that stopped as asked is not lost");
    }

    @Test
    void oneDomainStopsAndStartsAgainWhileTheOtherTrainsOn() throws Exception {
        spawn(1000);
        BatchSink sink = sink();
        sink.accept(batch("alpha", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS);
        ActorRef<TrainerActor.Command> beta = trainers().get("beta");

        // a domain's lease handed over: only its trainer stops, with its final checkpoint
        TestProbe<JobGuardian.Stopped> probe = kit.createTestProbe();
        guardian.tell(new JobGuardian.Stop(WAIT, java.util.Set.of("alpha"), probe.getRef()));
        JobGuardian.Stopped stopped = probe.expectMessageClass(JobGuardian.Stopped.class, WAIT);
        assertEquals(java.util.Set.of("alpha"), stopped.finalCheckpoints().keySet());
        assertTrue(stopped.finalCheckpoints().get("alpha").isPresent(), "alpha's final checkpoint");
        assertEquals(Map.of("beta", beta), trainers(), "beta trains on, with the same trainer");
        sink.accept(batch("beta", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS);

        // the lease comes back: alpha starts again from its checkpoint, beta is not started twice
        List<JobGuardian.Domain> again = List.of(new JobGuardian.Domain(TrainerActor.Settings.of("alpha", AdapterSpec.mora(8,
                MoraVariant.SHARING), TrainerConfig.constant(1e-3), tmp.resolve("ckpt-alpha")).withCheckpointEvery(1000, null), model));
        JobGuardian.Settings s = new JobGuardian.Settings(again, model, tok, new EvaluatorActor.Settings(List.of(), "", 64, 4),
                new AdapterRegistry(tmp.resolve("registry-unused"), 5), null, d -> new PromotionPolicy(1e9, 0, 0), tmp.resolve("audit.jsonl"),
                Duration.ofSeconds(60));
        Map<String, ActorRef<TrainerActor.Command>> now = AskPattern.<JobGuardian.Command, Map<String, ActorRef<TrainerActor.Command>>>ask(
                guardian, r -> new JobGuardian.StartTraining(s, r), WAIT, kit.scheduler()).toCompletableFuture().get(60, TimeUnit.SECONDS);
        assertEquals(java.util.Set.of("alpha", "beta"), now.keySet());
        assertEquals(beta, now.get("beta"));
        assertTrue(now.get("alpha").path().name().endsWith("-2"), "a new trainer, under a new name: " + now.get("alpha").path());
        BatchSink sink2 = TrainerActor.sink(now, Duration.ofSeconds(30), kit.scheduler(), kit.system().executionContext());
        sink2.accept(batch("alpha", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS);
        guardian.tell(new JobGuardian.Stop(WAIT, probe.getRef()));
        stopped = probe.expectMessageClass(JobGuardian.Stopped.class, WAIT);
        assertEquals(java.util.Set.of("alpha", "beta"), stopped.finalCheckpoints().keySet());
        assertEquals(Map.of(), stopped.failed());
        assertFalse(lost.isDone(), "no trainer lost");
    }

    @Test
    void adminMovesGoThroughTheGuardianToTheSupervisorAndReachTheHooks() throws Exception {
        spawn(1);
        sink().accept(batch("beta", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS); // checkpoint: beta@v1
        AdapterVersion v1 = AdapterVersion.parse("beta@v1");
        assertTrue(waitFor(e -> e instanceof MoraEvent.Decided d && d.version().equals(v1)), "the gate judged beta@v1");

        AdapterVersion served = AskPattern.<JobGuardian.Command, AdapterVersion>askWithStatus(guardian,
                r -> new JobGuardian.MoveAlias(v1, false, "test", r), WAIT, kit.scheduler()).toCompletableFuture().get(60, TimeUnit.SECONDS);
        assertEquals(v1, served);
        PromotionSupervisor.Promoted p = promoted.poll(60, TimeUnit.SECONDS);
        assertNotNull(p, "the promotion reached the hook");
        assertEquals(v1, p.version());
        assertEquals(PromotionDecision.PROMOTED_BY_ADMIN, p.decision());

        ExecutionException missing = assertThrows(ExecutionException.class, () -> AskPattern.<JobGuardian.Command, AdapterVersion>askWithStatus(
                guardian, r -> new JobGuardian.MoveAlias(AdapterVersion.parse("beta@v99"), false, "test", r), WAIT, kit.scheduler())
                .toCompletableFuture().get(60, TimeUnit.SECONDS));
        assertTrue(String.valueOf(missing.getCause().getMessage()).contains("v99"), String.valueOf(missing.getCause()));
    }

    @Test
    void aTrainerThatFailsMoreThanItsSupervisionAllowsIsReportedLost() throws Exception {
        spawn(1000);
        BatchSink sink = sink();
        // NaN target masks: a non-finite loss, a failed batch, a restart; the 11th failure in a minute stops it
        for (int i = 0; i < 11 && !lost.isDone(); i++) {
            try {
                sink.accept(batch("alpha", Float.NaN)).toCompletableFuture().get(60, TimeUnit.SECONDS);
            } catch (ExecutionException expected) {
                // the batch failed, as it should
            }
        }
        assertEquals("alpha", lost.get(60, TimeUnit.SECONDS));
        // the other domain goes on training
        sink.accept(batch("beta", 1f)).toCompletableFuture().get(60, TimeUnit.SECONDS);
        TestProbe<JobGuardian.Stopped> probe = kit.createTestProbe();
        guardian.tell(new JobGuardian.Stop(WAIT, probe.getRef()));
        JobGuardian.Stopped stopped = probe.expectMessageClass(JobGuardian.Stopped.class, WAIT);
        assertTrue(stopped.failed().get("alpha").contains("repeated failures"), stopped.toString());
        assertTrue(stopped.finalCheckpoints().get("beta").isPresent(), stopped.toString());
    }

    private boolean waitFor(java.util.function.Predicate<MoraEvent> match) throws InterruptedException {
        long end = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < end) {
            MoraEvent e = events.poll(1, TimeUnit.SECONDS);
            if (e != null && match.test(e)) {
                return true;
            }
        }
        return false;
    }
}
