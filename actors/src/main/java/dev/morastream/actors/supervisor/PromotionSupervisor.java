package dev.morastream.actors.supervisor;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.evaluator.Sample;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.registry.AdapterVersion;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.pattern.StatusReply;

/**
 * Decides which adapter version serves each domain. On {@link CandidateReady} it asks the
 * registry for the version in service, asks the evaluator to score both on the same sets, applies
 * the {@link PromotionPolicy}, and either moves the registry alias (promotion) or leaves it
 * (rejection, with the policy's reasons). {@link Promote} (an operator's choice, no gate) and
 * {@link Rollback} (back to an older version) move the alias to a stored version, each audited as
 * its own {@link PromotionDecision}. Every decision is appended, with its scores, to a JSONL audit
 * log ({@link AuditLog}), and sent to the subscribed listeners ({@link Promoted} is what serving acts on).
 *
 * <p>One candidate is judged at a time; candidates arriving meanwhile queue, and a newer candidate
 * of a domain replaces a queued older one (recorded in the audit log as {@code superseded}). Spawn
 * on {@link #DISPATCHER}: the audit log is fsynced.
 *
 * <p>Failures never stop it, and never lose a decision silently:
 * <ul>
 *   <li>an audit-log write that fails keeps the record in memory, logs it, publishes
 *       {@link MoraEvent.AuditFailed} and retries with exponential backoff until it lands (records keep
 *       their order); the decision itself (alias, listeners) is not held back;
 *   <li>a registry read or alias move that fails while judging a candidate is retried with backoff
 *       ({@link MoraEvent.SupervisorRetry}) before the candidate is rejected with {@link RejectReason#ERROR};
 *   <li>anything else that throws restarts the actor with backoff, keeping its state (listeners,
 *       queue, unwritten audit records); the candidate being judged is judged again from the start.
 * </ul>
 */
public final class PromotionSupervisor extends AbstractBehavior<PromotionSupervisor.Command> {
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.actors.blocking-dispatcher");
    private static final ObjectMapper JSON = new ObjectMapper();

    /** What the supervisor understands. */
    public sealed interface Command {}

    /**
     * A trainer checkpoint published to the registry.
     *
     * @param dir the version's directory in the registry
     * @param sample what the trainer trained on (memorisation sets)
     * @param step the trainer's optimizer step
     * @param progressiveLoss mean before-update loss of the batches since the previous checkpoint
     */
    public record CandidateReady(AdapterVersion version, Path dir, Sample sample, long step, double progressiveLoss)
            implements Command {}

    /** An operator makes {@code to} the version in service (no gate): audited as {@link PromotionDecision#PROMOTED_BY_ADMIN}. */
    public record Promote(AdapterVersion to, String reason, ActorRef<StatusReply<AdapterVersion>> replyTo) implements Command {}

    /** Points the domain's alias back at an older stored version: audited as {@link PromotionDecision#ROLLED_BACK}. */
    public record Rollback(AdapterVersion to, String reason, ActorRef<StatusReply<AdapterVersion>> replyTo) implements Command {}

    /**
     * The domains are no longer decided here (their leases went to another node): their queued
     * candidates and the one being judged are dropped, recorded as superseded; a late answer about
     * the dropped one is ignored. Candidates that arrive afterwards are judged as usual.
     */
    public record Forget(java.util.Set<String> domains) implements Command {}

    /** Adds a listener of every decision. */
    public record Subscribe(ActorRef<Event> listener) implements Command {}

    /**
     * Backoff of retries and restarts.
     *
     * @param minBackoff first delay
     * @param maxBackoff largest delay (doubling in between)
     * @param attempts registry operations tried this many times before a candidate is rejected
     * @param askTimeout how long one registry operation may take
     */
    public record Retry(Duration minBackoff, Duration maxBackoff, int attempts, Duration askTimeout) {
        public static final Retry DEFAULT = new Retry(Duration.ofSeconds(1), Duration.ofSeconds(30), 5, Duration.ofSeconds(30));

        public Retry {
            if (minBackoff.isNegative() || minBackoff.isZero() || maxBackoff.compareTo(minBackoff) < 0 || attempts < 1) {
                throw new IllegalArgumentException("bad retry settings " + minBackoff + ", " + maxBackoff + ", " + attempts);
            }
        }

        Duration delay(int attempt) {
            long ms = minBackoff.toMillis() << Math.min(20, Math.max(0, attempt - 1));
            return Duration.ofMillis(Math.min(ms, maxBackoff.toMillis()));
        }
    }

    private enum Move { PROMOTE, ROLLBACK }

    private record AdminMove(Move kind, AdapterVersion to, String reason, ActorRef<StatusReply<AdapterVersion>> replyTo) {}

    private record ServingKnown(long flow, int attempt, StatusReply<Optional<AdapterRegistry.Entry>> reply) implements Command {}

    private record Evaluated(long flow, Optional<AdapterRegistry.Entry> serving, StatusReply<EvaluatorActor.Evaluation> reply)
            implements Command {}

    private record AliasMoved(long flow, int attempt, Optional<AdapterRegistry.Entry> serving, EvaluatorActor.Evaluation eval,
                              PromotionPolicy.Decision decision, StatusReply<AdapterRegistry.Entry> reply) implements Command {}

    private record AskServing(long flow, int attempt) implements Command {}

    private record AskAliasMove(long flow, int attempt, Optional<AdapterRegistry.Entry> serving, EvaluatorActor.Evaluation eval,
                                PromotionPolicy.Decision decision) implements Command {}

    private record MoveFrom(AdminMove move, StatusReply<Optional<AdapterRegistry.Entry>> reply) implements Command {}

    private record Moved(AdminMove move, Optional<AdapterVersion> from, StatusReply<AdapterRegistry.Entry> reply) implements Command {}

    private record FlushAudit() implements Command {}

    /** What listeners hear. */
    public sealed interface Event {}

    /**
     * The alias of {@code version.domain()} now points at {@code version}: serve it.
     *
     * @param decision why: {@link PromotionDecision#PROMOTED}, {@link PromotionDecision#PROMOTED_BY_ADMIN} or
     *     {@link PromotionDecision#ROLLED_BACK}
     */
    public record Promoted(AdapterVersion version, Path dir, Optional<AdapterVersion> previous, PromotionDecision decision,
                           List<String> reasons) implements Event {}

    /** The candidate was judged and left out of service. */
    public record Rejected(AdapterVersion version, Optional<AdapterVersion> serving, List<String> reasons) implements Event {}

    /** An audit record not written yet. */
    private record Pending(ObjectNode record, AdapterVersion version, PromotionDecision decision) {}

    /** What outlives a restart. */
    private static final class State {
        final List<ActorRef<Event>> listeners = new ArrayList<>();
        final Deque<CandidateReady> queue = new ArrayDeque<>();
        final Deque<Pending> unwritten = new ArrayDeque<>();
        CandidateReady current; // being judged
        long flow; // replies of an older flow (before a restart) are ignored
        long evalStarted;
        int auditAttempt;
        boolean auditWaiting;
    }

    private final ActorRef<AdapterRegistryActor.Command> registry;
    private final ActorRef<EvaluatorActor.Command> evaluator;
    private final java.util.function.Function<String, PromotionPolicy> policies; // domain -> its gate
    private final Path auditLog;
    private final Duration evalTimeout;
    private final Retry retry;
    private final State st;
    private final TimerScheduler<Command> timers;

    /**
     * @param auditLog JSONL file that every decision is appended to (created when missing)
     * @param evalTimeout how long an evaluation may take before the candidate is rejected
     */
    public static Behavior<Command> create(ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<EvaluatorActor.Command> evaluator, PromotionPolicy policy,
                                           Path auditLog, Duration evalTimeout) {
        return create(registry, evaluator, domain -> policy, auditLog, evalTimeout, Retry.DEFAULT);
    }

    /** As above, with each domain's own gate ({@code policies} maps a domain to it). */
    public static Behavior<Command> create(ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<EvaluatorActor.Command> evaluator,
                                           java.util.function.Function<String, PromotionPolicy> policies,
                                           Path auditLog, Duration evalTimeout) {
        return create(registry, evaluator, policies, auditLog, evalTimeout, Retry.DEFAULT);
    }

    /** As {@link #create(ActorRef, ActorRef, PromotionPolicy, Path, Duration)}, with the given backoff. */
    public static Behavior<Command> create(ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<EvaluatorActor.Command> evaluator, PromotionPolicy policy,
                                           Path auditLog, Duration evalTimeout, Retry retry) {
        return create(registry, evaluator, domain -> policy, auditLog, evalTimeout, retry);
    }

    /** Each domain's own gate, and the given backoff. */
    public static Behavior<Command> create(ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<EvaluatorActor.Command> evaluator,
                                           java.util.function.Function<String, PromotionPolicy> policies,
                                           Path auditLog, Duration evalTimeout, Retry retry) {
        return Behaviors.setup(outer -> {
            State st = new State();
            Behavior<Command> inner = Behaviors.setup(ctx -> Behaviors.withTimers(
                    timers -> new PromotionSupervisor(ctx, timers, registry, evaluator, policies, auditLog, evalTimeout, retry, st)));
            return Behaviors.supervise(inner).onFailure(Exception.class,
                    SupervisorStrategy.restartWithBackoff(retry.minBackoff(), retry.maxBackoff(), 0.2));
        });
    }

    private PromotionSupervisor(ActorContext<Command> ctx, TimerScheduler<Command> timers, ActorRef<AdapterRegistryActor.Command> registry,
                                ActorRef<EvaluatorActor.Command> evaluator, java.util.function.Function<String, PromotionPolicy> policies,
                                Path auditLog, Duration evalTimeout, Retry retry, State st) {
        super(ctx);
        this.registry = registry;
        this.evaluator = evaluator;
        this.policies = policies;
        this.auditLog = auditLog;
        this.evalTimeout = evalTimeout;
        this.retry = retry;
        this.st = st;
        this.timers = timers;
        if (!st.unwritten.isEmpty()) {
            st.auditWaiting = false;
            ctx.getSelf().tell(new FlushAudit());
        }
        if (st.current != null) {
            ctx.getLog().warn("supervisor: restarted while judging {}: judging it again", st.current.version());
            st.flow++;
            askServing(st.flow, 1);
        }
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(CandidateReady.class, this::onCandidate)
                .onMessage(Forget.class, this::onForget)
                .onMessage(AskServing.class, m -> m.flow() == st.flow ? askServing(m.flow(), m.attempt()) : this)
                .onMessage(ServingKnown.class, this::onServingKnown)
                .onMessage(Evaluated.class, this::onEvaluated)
                .onMessage(AskAliasMove.class, this::onAskAliasMove)
                .onMessage(AliasMoved.class, this::onAliasMoved)
                .onMessage(Promote.class, m -> onMove(new AdminMove(Move.PROMOTE, m.to(), m.reason(), m.replyTo())))
                .onMessage(Rollback.class, m -> onMove(new AdminMove(Move.ROLLBACK, m.to(), m.reason(), m.replyTo())))
                .onMessage(MoveFrom.class, this::onMoveFrom)
                .onMessage(Moved.class, this::onMoved)
                .onMessage(FlushAudit.class, m -> {
                    st.auditWaiting = false;
                    flushAudit();
                    return this;
                })
                .onMessage(Subscribe.class, m -> {
                    st.listeners.add(m.listener());
                    return this;
                })
                .onSignal(PostStop.class, sig -> {
                    for (Pending p : st.unwritten) {
                        getContext().getLog().error("supervisor: stopping with a decision NOT in the audit log {}: {}", auditLog, p.record());
                    }
                    return this;
                })
                .build();
    }

    // ---- judging candidates ----

    private Behavior<Command> onCandidate(CandidateReady c) {
        if (st.current != null) {
            st.queue.removeIf(q -> {
                boolean older = q.version().domain().equals(c.version().domain());
                if (older) {
                    List<String> why = List.of("newer candidate " + c.version() + " arrived");
                    audit(PromotionDecision.SUPERSEDED, q.version(), Optional.empty(), null, why, List.of(RejectReason.SUPERSEDED));
                }
                return older;
            });
            st.queue.add(c);
            return this;
        }
        st.current = c;
        st.flow++;
        return askServing(st.flow, 1);
    }

    private Behavior<Command> onForget(Forget m) {
        List<String> why = List.of("its domain is decided on another node now (lease handed over)");
        st.queue.removeIf(q -> {
            boolean gone = m.domains().contains(q.version().domain());
            if (gone) {
                audit(PromotionDecision.SUPERSEDED, q.version(), Optional.empty(), null, why, List.of(RejectReason.SUPERSEDED));
            }
            return gone;
        });
        CandidateReady c = st.current;
        if (c == null || !m.domains().contains(c.version().domain())) {
            return this;
        }
        st.flow++; // the evaluator's, the registry's or a retry's answer about it is ignored
        audit(PromotionDecision.SUPERSEDED, c.version(), Optional.empty(), null, why, List.of(RejectReason.SUPERSEDED));
        getContext().getLog().info("supervisor: dropped {}: {}", c.version(), why.get(0));
        return next();
    }

    private Behavior<Command> askServing(long flow, int attempt) {
        String domain = st.current.version().domain();
        getContext().ask(statusClass(), registry, retry.askTimeout(),
                (ActorRef<StatusReply<Optional<AdapterRegistry.Entry>>> r) -> new AdapterRegistryActor.GetAlias(domain, r),
                (r, err) -> new ServingKnown(flow, attempt, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onServingKnown(ServingKnown m) {
        if (m.flow() != st.flow) {
            return this;
        }
        CandidateReady c = st.current;
        if (m.reply().isError()) {
            String err = m.reply().getError().getMessage();
            if (m.attempt() < retry.attempts()) {
                retryLater("read the alias", err, m.attempt(), new AskServing(m.flow(), m.attempt() + 1));
                return this;
            }
            return reject(c, Optional.empty(), null, List.of("cannot read the alias after " + m.attempt() + " attempts: " + err),
                    List.of(RejectReason.ERROR));
        }
        Optional<AdapterRegistry.Entry> serving = m.reply().getValue();
        st.evalStarted = System.nanoTime();
        long flow = m.flow();
        getContext().ask(statusClass(), evaluator, evalTimeout,
                (ActorRef<StatusReply<EvaluatorActor.Evaluation>> r) -> new EvaluatorActor.Evaluate(c.dir(),
                        serving.map(AdapterRegistry.Entry::dir), c.sample(), r),
                (r, err) -> new Evaluated(flow, serving, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onEvaluated(Evaluated m) {
        if (m.flow() != st.flow) {
            return this;
        }
        CandidateReady c = st.current;
        if (m.reply().isError()) {
            return reject(c, m.serving(), null, List.of("evaluation failed: " + m.reply().getError().getMessage()),
                    List.of(RejectReason.ERROR));
        }
        EvaluatorActor.Evaluation scored = m.reply().getValue();
        EvaluatorActor.Evaluation eval = new EvaluatorActor.Evaluation(scored.candidate().withProgressiveLoss(c.progressiveLoss()),
                scored.serving(), scored.base());
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.Evaluated(c.version().domain(), c.version(),
                m.serving().map(AdapterRegistry.Entry::version), eval, System.nanoTime() - st.evalStarted));
        PromotionPolicy.Decision d = policies.apply(c.version().domain()).decide(eval.candidate(), eval.serving(), eval.base());
        if (!d.promote()) {
            return reject(c, m.serving(), eval, d.reasons(), d.codes());
        }
        return onAskAliasMove(new AskAliasMove(m.flow(), 1, m.serving(), eval, d));
    }

    private Behavior<Command> onAskAliasMove(AskAliasMove m) {
        if (m.flow() != st.flow) {
            return this;
        }
        AdapterVersion v = st.current.version();
        getContext().ask(statusClass(), registry, retry.askTimeout(),
                (ActorRef<StatusReply<AdapterRegistry.Entry>> r) -> new AdapterRegistryActor.SetAlias(v, r),
                (r, err) -> new AliasMoved(m.flow(), m.attempt(), m.serving(), m.eval(), m.decision(),
                        err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onAliasMoved(AliasMoved m) {
        if (m.flow() != st.flow) {
            return this;
        }
        CandidateReady c = st.current;
        Optional<AdapterVersion> prev = m.serving().map(AdapterRegistry.Entry::version);
        if (m.reply().isError()) {
            String err = m.reply().getError().getMessage();
            if (!java.nio.file.Files.isDirectory(c.dir())) {
                // the registry pruned it while it was judged: newer versions of the domain exist (and queue)
                List<String> why = List.of("pruned from the registry while it was judged: newer versions exist");
                audit(PromotionDecision.SUPERSEDED, c.version(), prev, m.eval(), why, List.of(RejectReason.SUPERSEDED));
                getContext().getLog().info("supervisor: {} superseded: {}", c.version(), why);
                tellAll(new Rejected(c.version(), prev, why));
                return next();
            }
            if (m.attempt() < retry.attempts()) {
                retryLater("move the alias to " + c.version(), err, m.attempt(),
                        new AskAliasMove(m.flow(), m.attempt() + 1, m.serving(), m.eval(), m.decision()));
                return this;
            }
            return reject(c, m.serving(), m.eval(), List.of("alias move failed after " + m.attempt() + " attempts: " + err),
                    List.of(RejectReason.ERROR));
        }
        audit(PromotionDecision.PROMOTED, c.version(), prev, m.eval(), m.decision().reasons(), List.of());
        getContext().getLog().info("supervisor: promoted {} (was {}): {}", c.version(), prev.map(Object::toString).orElse("base"),
                m.decision().reasons());
        tellAll(new Promoted(c.version(), m.reply().getValue().dir(), prev, PromotionDecision.PROMOTED, m.decision().reasons()));
        return next();
    }

    private void retryLater(String what, String err, int attempt, Command again) {
        Duration delay = retry.delay(attempt);
        String domain = st.current.version().domain();
        getContext().getLog().warn("supervisor: could not {} ({}; attempt {} of {}): retrying in {} ms", what, err, attempt,
                retry.attempts(), delay.toMillis());
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.SupervisorRetry(domain, what, err, attempt, delay.toMillis()));
        timers.startSingleTimer("retry", again, delay);
    }

    private Behavior<Command> reject(CandidateReady c, Optional<AdapterRegistry.Entry> serving, EvaluatorActor.Evaluation eval,
                                     List<String> reasons, List<RejectReason> codes) {
        Optional<AdapterVersion> sv = serving.map(AdapterRegistry.Entry::version);
        audit(PromotionDecision.REJECTED, c.version(), sv, eval, reasons, codes);
        getContext().getLog().info("supervisor: rejected {}: {}", c.version(), reasons);
        tellAll(new Rejected(c.version(), sv, List.copyOf(reasons)));
        return next();
    }

    private Behavior<Command> next() {
        st.current = null;
        CandidateReady c = st.queue.poll();
        return c == null ? this : onCandidate(c);
    }

    private void tellAll(Event e) {
        st.listeners.forEach(l -> l.tell(e));
    }

    // ---- operator moves: promote and rollback ----

    private Behavior<Command> onMove(AdminMove m) {
        String domain = m.to().domain();
        getContext().ask(statusClass(), registry, retry.askTimeout(),
                (ActorRef<StatusReply<Optional<AdapterRegistry.Entry>>> r) -> new AdapterRegistryActor.GetAlias(domain, r),
                (r, err) -> new MoveFrom(m, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onMoveFrom(MoveFrom m) {
        Optional<AdapterVersion> from = m.reply().isSuccess() ? m.reply().getValue().map(AdapterRegistry.Entry::version) : Optional.empty();
        getContext().ask(statusClass(), registry, retry.askTimeout(),
                (ActorRef<StatusReply<AdapterRegistry.Entry>> r) -> new AdapterRegistryActor.SetAlias(m.move().to(), r),
                (r, err) -> new Moved(m.move(), from, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onMoved(Moved m) {
        AdminMove mv = m.move();
        boolean promote = mv.kind() == Move.PROMOTE;
        String verb = promote ? "promotion" : "rollback";
        if (m.reply().isError()) {
            String err = m.reply().getError().getMessage();
            audit(promote ? PromotionDecision.PROMOTE_FAILED : PromotionDecision.ROLLBACK_FAILED, mv.to(), m.from(), null,
                    List.of(mv.reason(), err), List.of(RejectReason.ERROR));
            getContext().getLog().warn("supervisor: {} to {} failed: {}", verb, mv.to(), err);
            mv.replyTo().tell(StatusReply.error(verb + " to " + mv.to() + " failed: " + err));
            return this;
        }
        PromotionDecision d = promote ? PromotionDecision.PROMOTED_BY_ADMIN : PromotionDecision.ROLLED_BACK;
        audit(d, mv.to(), m.from(), null, List.of(mv.reason()), List.of());
        getContext().getLog().info("supervisor: {} {} -> {} ({})", d.id(), m.from().map(Object::toString).orElse("base"), mv.to(),
                mv.reason());
        tellAll(new Promoted(mv.to(), m.reply().getValue().dir(), m.from(), d, List.of(mv.reason())));
        mv.replyTo().tell(StatusReply.success(mv.to()));
        return this;
    }

    // ---- the audit log ----

    /** Records a decision: event now, audit line now or, when the log cannot be written, retried until it is. */
    private void audit(PromotionDecision decision, AdapterVersion version, Optional<AdapterVersion> serving,
                       EvaluatorActor.Evaluation eval, List<String> reasons, List<RejectReason> codes) {
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.Decided(version.domain(), version, decision, codes, reasons));
        ObjectNode n = JSON.createObjectNode();
        n.put("time", Instant.now().toString());
        n.put("domain", version.domain());
        n.put("decision", decision.id());
        n.put("version", version.toString());
        n.put("serving", serving.map(Object::toString).orElse("base"));
        reasons.forEach(n.putArray("reasons")::add);
        if (!codes.isEmpty()) {
            codes.forEach(c -> n.withArray("codes").add(c.id()));
        }
        if (eval != null) {
            n.set("candidate_scores", JSON.valueToTree(eval.candidate()));
            n.set("serving_scores", JSON.valueToTree(eval.serving()));
            n.set("base_scores", JSON.valueToTree(eval.base()));
        }
        st.unwritten.add(new Pending(n, version, decision));
        flushAudit();
    }

    private void flushAudit() {
        if (st.auditWaiting) {
            return; // a retry is scheduled; order is kept
        }
        int written = 0;
        while (!st.unwritten.isEmpty()) {
            Pending p = st.unwritten.peek();
            try {
                AuditLog.append(auditLog, p.record());
            } catch (IOException | RuntimeException e) {
                st.auditAttempt++;
                Duration delay = retry.delay(st.auditAttempt);
                String err = e.toString();
                if (st.auditAttempt == 1) {
                    getContext().getLog().error("supervisor: cannot write the audit log {} ({}): {} decision(s) kept in memory, "
                            + "retrying in {} ms", auditLog, err, st.unwritten.size(), delay.toMillis());
                } else {
                    getContext().getLog().warn("supervisor: audit log {} still not writable ({}; attempt {}, {} decision(s) waiting), "
                            + "retrying in {} ms", auditLog, err, st.auditAttempt, st.unwritten.size(), delay.toMillis());
                }
                MoraEvent.publish(getContext().getSystem(), new MoraEvent.AuditFailed(p.version().domain(), p.version(),
                        p.decision(), err, st.auditAttempt, st.unwritten.size()));
                st.auditWaiting = true;
                timers.startSingleTimer("audit", new FlushAudit(), delay);
                return;
            }
            st.unwritten.poll();
            written++;
        }
        if (st.auditAttempt > 0) {
            getContext().getLog().info("supervisor: the audit log {} is writable again ({} waiting decision(s) written)", auditLog,
                    written);
            st.auditAttempt = 0;
        }
    }

    @SuppressWarnings("unchecked")
    private static <T> Class<StatusReply<T>> statusClass() {
        return (Class<StatusReply<T>>) (Class<?>) StatusReply.class;
    }

    @SuppressWarnings("unchecked")
    private static <T> StatusReply<T> cast(Object r) {
        return (StatusReply<T>) r;
    }
}
