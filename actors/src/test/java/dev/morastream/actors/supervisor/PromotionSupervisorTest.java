package dev.morastream.actors.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.evaluator.Sample;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.registry.AdapterVersion;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import dev.morastream.actors.events.MoraEvent;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.pattern.StatusReply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Promotion gates, rollback and the audit log, with a stub evaluator (the supervisor's logic only). */
class PromotionSupervisorTest {
    static final ActorTestKit kit = ActorTestKit.create();
    static final PromotionPolicy POLICY = new PromotionPolicy(0.02, 0.02, 0.02);
    static final Scores BASE = new Scores(0.10, 3.0, Map.of("capitals", 0.80, "arith", 0.50), 0.55);

    @TempDir
    Path tmp;
    AdapterRegistry registry;
    ActorRef<PromotionSupervisor.Command> supervisor;
    TestProbe<PromotionSupervisor.Event> events;
    Path audit;
    /** What the stub evaluator answers per registry version directory ("v1", "v2"…); the base scores BASE. */
    final Map<String, Scores> scores = new ConcurrentHashMap<>();

    @AfterAll
    static void shutdown() {
        kit.shutdownTestKit();
    }

    static Behavior<EvaluatorActor.Command> stubEvaluator(Map<String, Scores> byDir) {
        return Behaviors.receive(EvaluatorActor.Command.class)
                .onMessage(EvaluatorActor.Evaluate.class, m -> {
                    Scores c = byDir.get(m.candidateDir().getFileName().toString());
                    Scores s = m.servingDir().map(d -> byDir.get(d.getFileName().toString())).orElse(BASE);
                    m.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(c, s)));
                    return Behaviors.same();
                })
                .build();
    }

    @BeforeEach
    void start() throws Exception {
        registry = new AdapterRegistry(tmp.resolve("registry"), 10);
        ActorRef<AdapterRegistryActor.Command> reg = kit.spawn(AdapterRegistryActor.create(registry));
        ActorRef<EvaluatorActor.Command> eval = kit.spawn(stubEvaluator(scores));
        audit = tmp.resolve("audit.jsonl");
        supervisor = kit.spawn(PromotionSupervisor.create(reg, eval, POLICY, audit, Duration.ofSeconds(10)));
        events = kit.createTestProbe();
        supervisor.tell(new PromotionSupervisor.Subscribe(events.getRef()));
    }

    /** Publishes a dummy adapter directory as the next version with the scores the stub will report. */
    PromotionSupervisor.CandidateReady candidate(Scores s) throws Exception {
        return candidate("news", s);
    }

    /** As above, of {@code domain}. */
    PromotionSupervisor.CandidateReady candidate(String domain, Scores s) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("adapter-" + System.nanoTime()));
        Files.writeString(dir.resolve("adapter_config.json"), "{}");
        AdapterRegistry.Entry e = registry.publish(domain, dir, Map.of(), Map.of());
        scores.put(e.dir().getFileName().toString(), s);
        return new PromotionSupervisor.CandidateReady(e.version(), e.dir(), Sample.EMPTY, 10, 1.0);
    }

    /** A supervisor whose evaluator is {@code held}, answered by the test (the supervisor is busy until then); its decisions go to {@link #events}. */
    ActorRef<PromotionSupervisor.Command> supervisorJudgedBy(TestProbe<EvaluatorActor.Command> held) {
        ActorRef<PromotionSupervisor.Command> sup = kit.spawn(PromotionSupervisor.create(
                kit.spawn(AdapterRegistryActor.create(registry)), held.getRef(), POLICY, audit, Duration.ofSeconds(10)));
        sup.tell(new PromotionSupervisor.Subscribe(events.getRef()));
        return sup;
    }

    List<JsonNode> auditLines() throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String l : Files.readAllLines(audit)) {
            out.add(new ObjectMapper().readTree(l));
        }
        return out;
    }

    static Scores better(Scores s, double memGain) {
        return new Scores(s.memorizationCharAcc() + memGain, s.memorizationLoss() * 0.8, s.downstream(), s.retentionLoss());
    }

    @Test
    void improvingCandidateIsPromotedAndTheAliasMoves() throws Exception {
        PromotionSupervisor.CandidateReady c = candidate(better(BASE, 0.30));
        supervisor.tell(c);
        PromotionSupervisor.Promoted p = events.expectMessageClass(PromotionSupervisor.Promoted.class);
        assertEquals(c.version(), p.version());
        assertEquals(Optional.empty(), p.previous());
        assertEquals(Optional.of(c.version()), registry.alias("news"));
        JsonNode line = auditLines().get(0);
        assertEquals("promoted", line.path("decision").asText());
        assertEquals("news@v1", line.path("version").asText());
        assertEquals("base", line.path("serving").asText());
        assertEquals(0.40, line.path("candidate_scores").path("memorizationCharAcc").asDouble(), 1e-9);

        // a second, better one replaces it; the listener is told which version it replaces
        PromotionSupervisor.CandidateReady c2 = candidate(better(BASE, 0.50));
        supervisor.tell(c2);
        PromotionSupervisor.Promoted p2 = events.expectMessageClass(PromotionSupervisor.Promoted.class);
        assertEquals(c2.version(), p2.version());
        assertEquals(Optional.of(c.version()), p2.previous());
        assertEquals(Optional.of(c2.version()), registry.alias("news"));
    }

    @Test
    void downstreamRegressionIsRejected() throws Exception {
        Scores worse = new Scores(0.90, 1.0, Map.of("capitals", 0.60, "arith", 0.50), 0.55);
        PromotionSupervisor.CandidateReady c = candidate(worse);
        supervisor.tell(c);
        PromotionSupervisor.Rejected r = events.expectMessageClass(PromotionSupervisor.Rejected.class);
        assertEquals(c.version(), r.version());
        assertTrue(r.reasons().stream().anyMatch(s -> s.contains("downstream 'capitals' regressed")), r.reasons().toString());
        assertEquals(Optional.empty(), registry.alias("news"));
        assertEquals("rejected", auditLines().get(0).path("decision").asText());
    }

    @Test
    void retentionRegressionIsRejectedAndTheServingVersionStays() throws Exception {
        PromotionSupervisor.CandidateReady good = candidate(better(BASE, 0.30));
        supervisor.tell(good);
        events.expectMessageClass(PromotionSupervisor.Promoted.class);
        Scores forgetful = new Scores(0.90, 1.0, BASE.downstream(), 0.55 * 1.10);
        PromotionSupervisor.CandidateReady c = candidate(forgetful);
        supervisor.tell(c);
        PromotionSupervisor.Rejected r = events.expectMessageClass(PromotionSupervisor.Rejected.class);
        assertEquals(Optional.of(good.version()), r.serving());
        assertTrue(r.reasons().stream().anyMatch(s -> s.contains("retention loss regressed")), r.reasons().toString());
        assertEquals(Optional.of(good.version()), registry.alias("news"));
    }

    @Test
    void nonFiniteCandidateIsNeverPromoted() throws Exception {
        Scores nan = new Scores(1.0, Double.NaN, BASE.downstream(), 0.1);
        supervisor.tell(candidate(nan));
        PromotionSupervisor.Rejected r = events.expectMessageClass(PromotionSupervisor.Rejected.class);
        assertTrue(r.reasons().contains("non-finite score in candidate"), r.reasons().toString());
        Scores inf = new Scores(Double.POSITIVE_INFINITY, 0.5, BASE.downstream(), 0.1);
        supervisor.tell(candidate(inf));
        events.expectMessageClass(PromotionSupervisor.Rejected.class);
        assertEquals(Optional.empty(), registry.alias("news"));
        assertEquals(2, auditLines().size());
    }

    @Test
    void rollbackMovesTheAliasBackAndTellsListeners() throws Exception {
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.20));
        supervisor.tell(v1);
        events.expectMessageClass(PromotionSupervisor.Promoted.class);
        PromotionSupervisor.CandidateReady v2 = candidate(better(BASE, 0.40));
        supervisor.tell(v2);
        events.expectMessageClass(PromotionSupervisor.Promoted.class);

        TestProbe<StatusReply<AdapterVersion>> reply = kit.createTestProbe();
        supervisor.tell(new PromotionSupervisor.Rollback(v1.version(), "bad answers reported", reply.getRef()));
        assertEquals(v1.version(), reply.receiveMessage().getValue());
        PromotionSupervisor.Promoted p = events.expectMessageClass(PromotionSupervisor.Promoted.class);
        assertEquals(PromotionDecision.ROLLED_BACK, p.decision());
        assertEquals(v1.version(), p.version());
        assertEquals(Optional.of(v2.version()), p.previous());
        assertEquals(Optional.of(v1.version()), registry.alias("news"));
        JsonNode last = auditLines().get(2);
        assertEquals("rolled_back", last.path("decision").asText());
        assertEquals("news@v2", last.path("serving").asText());

        // rolling back to a version that does not exist fails and changes nothing
        supervisor.tell(new PromotionSupervisor.Rollback(new AdapterVersion("news", 99), "typo", reply.getRef()));
        assertTrue(reply.receiveMessage().isError());
        assertEquals(Optional.of(v1.version()), registry.alias("news"));
        events.expectNoMessage(Duration.ofMillis(100));
    }

    @Test
    void candidatesQueueWhileOneIsJudgedAndANewerOneSupersedesAQueuedOne() throws Exception {
        // an evaluator the test answers by hand: the supervisor is busy until then
        TestProbe<EvaluatorActor.Command> held = kit.createTestProbe();
        ActorRef<PromotionSupervisor.Command> sup = supervisorJudgedBy(held);
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.1));
        PromotionSupervisor.CandidateReady v2 = candidate(better(BASE, 0.2));
        PromotionSupervisor.CandidateReady v3 = candidate(better(BASE, 0.3));
        sup.tell(v1);
        EvaluatorActor.Evaluate first = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        assertEquals(v1.dir(), first.candidateDir());
        sup.tell(v2);
        sup.tell(v3); // replaces the queued v2
        held.expectNoMessage(Duration.ofMillis(100));
        first.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(scores.get("v1"), BASE)));
        assertEquals(v1.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());

        EvaluatorActor.Evaluate second = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        assertEquals(v3.dir(), second.candidateDir());
        assertEquals(Optional.of(v1.dir()), second.servingDir());
        second.replyTo().tell(StatusReply.error("evaluator crashed"));
        PromotionSupervisor.Rejected r = events.expectMessageClass(PromotionSupervisor.Rejected.class);
        assertEquals(v3.version(), r.version());
        assertTrue(r.reasons().get(0).contains("evaluation failed"), r.reasons().toString());
        assertEquals(Optional.of(v1.version()), registry.alias("news"));
        assertEquals(List.of("superseded", "promoted", "rejected"), auditLines().stream().map(n -> n.path("decision").asText()).toList());
        assertEquals("news@v2", auditLines().get(0).path("version").asText());
    }

    @Test
    void aDomainHandedOverIsForgottenQueuedAndBeingJudgedWhileTheOthersAreJudgedOn() throws Exception {
        TestProbe<EvaluatorActor.Command> held = kit.createTestProbe();
        ActorRef<PromotionSupervisor.Command> sup = supervisorJudgedBy(held);
        PromotionSupervisor.CandidateReady news1 = candidate("news", better(BASE, 0.3));
        PromotionSupervisor.CandidateReady sport1 = candidate("sport", better(BASE, 0.3));
        PromotionSupervisor.CandidateReady news2 = candidate("news", better(BASE, 0.4));
        sup.tell(news1);
        EvaluatorActor.Evaluate judged = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        assertEquals(news1.dir(), judged.candidateDir());
        sup.tell(sport1);
        sup.tell(news2);
        sup.tell(new PromotionSupervisor.Forget(java.util.Set.of("news")));
        // the next one judged is sport's; the late answer about news1 changes nothing
        EvaluatorActor.Evaluate next = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        assertEquals(sport1.dir(), next.candidateDir());
        judged.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(scores.get(news1.dir().getFileName().toString()), BASE)));
        next.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(scores.get(sport1.dir().getFileName().toString()), BASE)));
        assertEquals(sport1.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
        events.expectNoMessage(Duration.ofMillis(200));
        assertEquals(Optional.empty(), registry.alias("news"), "a forgotten domain's alias does not move here");
        assertEquals(Optional.of(sport1.version()), registry.alias("sport"));
        assertEquals(List.of("superseded news@v2", "superseded news@v1", "promoted sport@v1"), auditLines().stream()
                .map(n -> n.path("decision").asText() + " " + n.path("version").asText()).toList());

        // the domain comes back: its candidates are judged again
        PromotionSupervisor.CandidateReady news3 = candidate("news", better(BASE, 0.5));
        sup.tell(news3);
        EvaluatorActor.Evaluate back = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        back.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(scores.get(news3.dir().getFileName().toString()), BASE)));
        assertEquals(news3.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
    }

    @Test
    void adminPromoteIsAuditedAsAPromotionByAdminAndRollbackAsARollback() throws Exception {
        TestProbe<MoraEvent.Decided> decided = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(MoraEvent.Decided.class, decided.getRef()));
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.20));
        supervisor.tell(v1);
        events.expectMessageClass(PromotionSupervisor.Promoted.class);
        assertEquals(PromotionDecision.PROMOTED, decided.receiveMessage().decision());
        // v2 is rejected by the gate; an operator promotes it anyway
        PromotionSupervisor.CandidateReady v2 = candidate(BASE);
        supervisor.tell(v2);
        events.expectMessageClass(PromotionSupervisor.Rejected.class);
        MoraEvent.Decided rejected = decided.receiveMessage();
        assertEquals(PromotionDecision.REJECTED, rejected.decision());
        assertEquals(List.of(RejectReason.MEMORIZATION), rejected.codes());

        TestProbe<StatusReply<AdapterVersion>> reply = kit.createTestProbe();
        supervisor.tell(new PromotionSupervisor.Promote(v2.version(), "promote via the HTTP admin API", reply.getRef()));
        assertEquals(v2.version(), reply.receiveMessage().getValue());
        PromotionSupervisor.Promoted p = events.expectMessageClass(PromotionSupervisor.Promoted.class);
        assertEquals(PromotionDecision.PROMOTED_BY_ADMIN, p.decision());
        assertEquals(Optional.of(v1.version()), p.previous());
        assertEquals(PromotionDecision.PROMOTED_BY_ADMIN, decided.receiveMessage().decision());
        assertEquals(Optional.of(v2.version()), registry.alias("news"));

        supervisor.tell(new PromotionSupervisor.Rollback(v1.version(), "rollback via the HTTP admin API", reply.getRef()));
        assertEquals(v1.version(), reply.receiveMessage().getValue());
        assertEquals(PromotionDecision.ROLLED_BACK, events.expectMessageClass(PromotionSupervisor.Promoted.class).decision());
        assertEquals(PromotionDecision.ROLLED_BACK, decided.receiveMessage().decision());

        List<JsonNode> lines = auditLines();
        assertEquals(List.of("promoted", "rejected", "promoted_by_admin", "rolled_back"),
                lines.stream().map(n -> n.path("decision").asText()).toList());
        assertEquals("memorization", lines.get(1).path("codes").get(0).asText());
        assertEquals("news@v1", lines.get(2).path("serving").asText());
        assertEquals(List.of(PromotionDecision.PROMOTED, PromotionDecision.REJECTED, PromotionDecision.PROMOTED_BY_ADMIN,
                PromotionDecision.ROLLED_BACK), lines.stream().map(AuditLog::decision).toList());
        kit.system().eventStream().tell(new EventStream.Unsubscribe<>(decided.getRef()));
    }

    static final PromotionSupervisor.Retry FAST = new PromotionSupervisor.Retry(Duration.ofMillis(50), Duration.ofMillis(200), 50,
            Duration.ofSeconds(5));

    ActorRef<PromotionSupervisor.Command> fastSupervisor() {
        ActorRef<PromotionSupervisor.Command> sup = kit.spawn(PromotionSupervisor.create(kit.spawn(AdapterRegistryActor.create(registry)),
                kit.spawn(stubEvaluator(scores)), POLICY, audit, Duration.ofSeconds(10), FAST));
        sup.tell(new PromotionSupervisor.Subscribe(events.getRef()));
        return sup;
    }

    @Test
    void anAuditLogThatCannotBeWrittenStopsNothingAndEveryDecisionLandsOnceItCanBe() throws Exception {
        TestProbe<MoraEvent.AuditFailed> failures = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(MoraEvent.AuditFailed.class, failures.getRef()));
        ActorRef<PromotionSupervisor.Command> sup = fastSupervisor();
        Files.createDirectories(audit.resolve("in-the-way")); // the audit "file" is a directory: every write fails
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.20));
        sup.tell(v1);
        assertEquals(v1.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
        MoraEvent.AuditFailed f = failures.receiveMessage();
        assertEquals(v1.version(), f.version());
        assertEquals(PromotionDecision.PROMOTED, f.decision());
        failures.receiveMessage(); // and it is retried
        // the supervisor goes on deciding meanwhile
        PromotionSupervisor.CandidateReady v2 = candidate(BASE);
        sup.tell(v2);
        assertEquals(v2.version(), events.expectMessageClass(PromotionSupervisor.Rejected.class).version());
        assertTrue(Files.isDirectory(audit));

        // the fault goes away: both decisions are written, in order, once
        Files.delete(audit.resolve("in-the-way"));
        Files.delete(audit);
        failures.awaitAssert(Duration.ofSeconds(5), () -> {
            try {
                assertEquals(List.of("promoted", "rejected"), auditLines().stream().map(n -> n.path("decision").asText()).toList());
            } catch (Exception e) {
                throw new AssertionError(e);
            }
            return null;
        });
        assertEquals("news@v1", auditLines().get(0).path("version").asText());
        kit.system().eventStream().tell(new EventStream.Unsubscribe<>(failures.getRef()));
        // and it still works
        PromotionSupervisor.CandidateReady v3 = candidate(better(BASE, 0.40));
        sup.tell(v3);
        assertEquals(v3.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
        assertEquals(3, auditLines().size());
    }

    @Test
    void aRegistryThatFailsToMoveTheAliasIsRetriedUntilThePromotionLands() throws Exception {
        TestProbe<MoraEvent.SupervisorRetry> retries = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(MoraEvent.SupervisorRetry.class, retries.getRef()));
        ActorRef<PromotionSupervisor.Command> sup = fastSupervisor();
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.20));
        // the alias is written through alias.json.tmp: a directory there makes every alias move fail
        Path blocker = Files.createDirectories(registry.root().resolve("news").resolve("alias.json.tmp").resolve("x"));
        sup.tell(v1);
        MoraEvent.SupervisorRetry r = retries.receiveMessage();
        assertTrue(r.operation().contains("move the alias"), r.operation());
        retries.receiveMessage();
        events.expectNoMessage(Duration.ofMillis(50));
        assertEquals(Optional.empty(), registry.alias("news"));
        Files.delete(blocker);
        Files.delete(blocker.getParent());
        PromotionSupervisor.Promoted p = events.expectMessageClass(PromotionSupervisor.Promoted.class, Duration.ofSeconds(5));
        assertEquals(v1.version(), p.version());
        assertEquals(Optional.of(v1.version()), registry.alias("news"));
        assertEquals(List.of("promoted"), auditLines().stream().map(n -> n.path("decision").asText()).toList());
        kit.system().eventStream().tell(new EventStream.Unsubscribe<>(retries.getRef()));
    }

    @Test
    void aRegistryThatNeverRecoversRejectsTheCandidateWithAnErrorAndTheNextOneIsJudged() throws Exception {
        ActorRef<PromotionSupervisor.Command> sup = kit.spawn(PromotionSupervisor.create(kit.spawn(AdapterRegistryActor.create(registry)),
                kit.spawn(stubEvaluator(scores)), POLICY, audit, Duration.ofSeconds(10),
                new PromotionSupervisor.Retry(Duration.ofMillis(20), Duration.ofMillis(40), 3, Duration.ofSeconds(5))));
        sup.tell(new PromotionSupervisor.Subscribe(events.getRef()));
        Path blocker = Files.createDirectories(registry.root().resolve("news").resolve("alias.json.tmp").resolve("x"));
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.20));
        sup.tell(v1);
        PromotionSupervisor.Rejected r = events.expectMessageClass(PromotionSupervisor.Rejected.class, Duration.ofSeconds(5));
        assertTrue(r.reasons().get(0).contains("after 3 attempts"), r.reasons().toString());
        JsonNode line = auditLines().get(0);
        assertEquals("rejected", line.path("decision").asText());
        assertEquals("error", line.path("codes").get(0).asText());
        Files.delete(blocker);
        Files.delete(blocker.getParent());
        PromotionSupervisor.CandidateReady v2 = candidate(better(BASE, 0.30));
        sup.tell(v2);
        assertEquals(v2.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
    }

    @Test
    void aSupervisorThatThrowsIsRestartedWithItsStateAndJudgesTheCandidateAgain() throws Exception {
        TestProbe<EvaluatorActor.Command> held = kit.createTestProbe();
        ActorRef<PromotionSupervisor.Command> sup = kit.spawn(PromotionSupervisor.create(kit.spawn(AdapterRegistryActor.create(registry)),
                held.getRef(), POLICY, audit, Duration.ofSeconds(10), FAST));
        sup.tell(new PromotionSupervisor.Subscribe(events.getRef()));
        PromotionSupervisor.CandidateReady v1 = candidate(better(BASE, 0.30));
        PromotionSupervisor.CandidateReady v2 = candidate(better(BASE, 0.40));
        sup.tell(v1);
        EvaluatorActor.Evaluate first = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        sup.tell(v2); // queued behind v1
        // a malformed evaluation (no candidate scores) makes the supervisor throw: supervision restarts it
        first.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(null, BASE)));
        // after the restart it judges v1 again, with its listener and its queue intact
        EvaluatorActor.Evaluate again = held.expectMessageClass(EvaluatorActor.Evaluate.class, Duration.ofSeconds(5));
        assertEquals(v1.dir(), again.candidateDir());
        again.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(scores.get("v1"), BASE)));
        assertEquals(v1.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
        EvaluatorActor.Evaluate second = held.expectMessageClass(EvaluatorActor.Evaluate.class);
        assertEquals(v2.dir(), second.candidateDir());
        second.replyTo().tell(StatusReply.success(new EvaluatorActor.Evaluation(scores.get("v2"), scores.get("v1"))));
        assertEquals(v2.version(), events.expectMessageClass(PromotionSupervisor.Promoted.class).version());
        assertEquals(List.of("promoted", "promoted"), auditLines().stream().map(n -> n.path("decision").asText()).toList());
    }
}
