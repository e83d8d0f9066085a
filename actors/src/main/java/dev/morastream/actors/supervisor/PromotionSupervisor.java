package dev.morastream.actors.supervisor;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.evaluator.Sample;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.registry.AdapterVersion;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
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
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.pattern.StatusReply;

/**
 * Decides which adapter version serves each domain. On {@link CandidateReady} it asks the
 * registry for the version in service, asks the evaluator to score both on the same sets, applies
 * the {@link PromotionPolicy}, and either moves the registry alias (promotion) or leaves it
 * (rejection, with the policy's reasons). {@link Rollback} moves the alias to any stored version.
 * Every decision is appended, with its scores, to a JSONL audit log, and sent to the subscribed
 * listeners ({@link Promoted} is what serving acts on).
 *
 * <p>One candidate is judged at a time; candidates arriving meanwhile queue, and a newer candidate
 * of a domain replaces a queued older one (recorded in the audit log as {@code superseded}). Spawn
 * on {@link #DISPATCHER}: the audit log is fsynced.
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

    /** Points the domain's alias back (or forth) at a stored version. */
    public record Rollback(AdapterVersion to, String reason, ActorRef<StatusReply<AdapterVersion>> replyTo) implements Command {}

    /** Adds a listener of every decision. */
    public record Subscribe(ActorRef<Event> listener) implements Command {}

    private record ServingKnown(CandidateReady candidate, StatusReply<Optional<AdapterRegistry.Entry>> reply) implements Command {}

    private record Evaluated(CandidateReady candidate, Optional<AdapterRegistry.Entry> serving,
                             StatusReply<EvaluatorActor.Evaluation> reply) implements Command {}

    private record AliasMoved(CandidateReady candidate, Optional<AdapterRegistry.Entry> serving, EvaluatorActor.Evaluation eval,
                              PromotionPolicy.Decision decision, StatusReply<AdapterRegistry.Entry> reply) implements Command {}

    private record RolledBack(Rollback command, Optional<AdapterVersion> from, StatusReply<AdapterRegistry.Entry> reply)
            implements Command {}

    private record RollbackFrom(Rollback command, StatusReply<Optional<AdapterRegistry.Entry>> reply) implements Command {}

    /** What listeners hear. */
    public sealed interface Event {}

    /** The alias of {@code version.domain()} now points at {@code version}: serve it. */
    public record Promoted(AdapterVersion version, Path dir, Optional<AdapterVersion> previous, String cause, List<String> reasons)
            implements Event {}

    /** The candidate was judged and left out of service. */
    public record Rejected(AdapterVersion version, Optional<AdapterVersion> serving, List<String> reasons) implements Event {}

    private final ActorRef<AdapterRegistryActor.Command> registry;
    private final ActorRef<EvaluatorActor.Command> evaluator;
    private final java.util.function.Function<String, PromotionPolicy> policies; // domain -> its gate
    private final Path auditLog;
    private final Duration evalTimeout;
    private final List<ActorRef<Event>> listeners = new ArrayList<>();
    private final Deque<CandidateReady> queue = new ArrayDeque<>();
    private boolean busy;
    private long evalStarted;

    /**
     * @param auditLog JSONL file that every decision is appended to (created when missing)
     * @param evalTimeout how long an evaluation may take before the candidate is rejected
     */
    public static Behavior<Command> create(ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<EvaluatorActor.Command> evaluator, PromotionPolicy policy,
                                           Path auditLog, Duration evalTimeout) {
        return create(registry, evaluator, domain -> policy, auditLog, evalTimeout);
    }

    /** As above, with each domain's own gate ({@code policies} maps a domain to it). */
    public static Behavior<Command> create(ActorRef<AdapterRegistryActor.Command> registry,
                                           ActorRef<EvaluatorActor.Command> evaluator,
                                           java.util.function.Function<String, PromotionPolicy> policies,
                                           Path auditLog, Duration evalTimeout) {
        return Behaviors.setup(ctx -> new PromotionSupervisor(ctx, registry, evaluator, policies, auditLog, evalTimeout));
    }

    private PromotionSupervisor(ActorContext<Command> ctx, ActorRef<AdapterRegistryActor.Command> registry,
                                ActorRef<EvaluatorActor.Command> evaluator,
                                java.util.function.Function<String, PromotionPolicy> policies, Path auditLog,
                                Duration evalTimeout) {
        super(ctx);
        this.registry = registry;
        this.evaluator = evaluator;
        this.policies = policies;
        this.auditLog = auditLog;
        this.evalTimeout = evalTimeout;
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(CandidateReady.class, this::onCandidate)
                .onMessage(ServingKnown.class, this::onServingKnown)
                .onMessage(Evaluated.class, this::onEvaluated)
                .onMessage(AliasMoved.class, this::onAliasMoved)
                .onMessage(Rollback.class, this::onRollback)
                .onMessage(RollbackFrom.class, this::onRollbackFrom)
                .onMessage(RolledBack.class, this::onRolledBack)
                .onMessage(Subscribe.class, m -> {
                    listeners.add(m.listener());
                    return this;
                })
                .build();
    }

    private Behavior<Command> onCandidate(CandidateReady c) {
        if (busy) {
            queue.removeIf(q -> {
                boolean older = q.version().domain().equals(c.version().domain());
                if (older) {
                    List<String> why = List.of("newer candidate " + c.version() + " arrived");
                    audit("superseded", q.version(), Optional.empty(), null, why);
                    decided(q.version(), "superseded", List.of("superseded"), why);
                }
                return older;
            });
            queue.add(c);
            return this;
        }
        busy = true;
        String domain = c.version().domain();
        getContext().ask(statusClass(), registry, Duration.ofSeconds(30),
                (ActorRef<StatusReply<Optional<AdapterRegistry.Entry>>> r) -> new AdapterRegistryActor.GetAlias(domain, r),
                (r, err) -> new ServingKnown(c, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onServingKnown(ServingKnown m) {
        if (m.reply().isError()) {
            return reject(m.candidate(), Optional.empty(), null, List.of("cannot read the alias: " + m.reply().getError().getMessage()),
                    List.of("error"));
        }
        Optional<AdapterRegistry.Entry> serving = m.reply().getValue();
        CandidateReady c = m.candidate();
        evalStarted = System.nanoTime();
        getContext().ask(statusClass(), evaluator, evalTimeout,
                (ActorRef<StatusReply<EvaluatorActor.Evaluation>> r) -> new EvaluatorActor.Evaluate(c.dir(),
                        serving.map(AdapterRegistry.Entry::dir), c.sample(), r),
                (r, err) -> new Evaluated(c, serving, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onEvaluated(Evaluated m) {
        CandidateReady c = m.candidate();
        if (m.reply().isError()) {
            return reject(c, m.serving(), null, List.of("evaluation failed: " + m.reply().getError().getMessage()), List.of("error"));
        }
        EvaluatorActor.Evaluation scored = m.reply().getValue();
        EvaluatorActor.Evaluation eval = new EvaluatorActor.Evaluation(scored.candidate().withProgressiveLoss(c.progressiveLoss()),
                scored.serving());
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.Evaluated(c.version().domain(), c.version(),
                m.serving().map(AdapterRegistry.Entry::version), eval, System.nanoTime() - evalStarted));
        PromotionPolicy.Decision d = policies.apply(c.version().domain()).decide(eval.candidate(), eval.serving());
        if (!d.promote()) {
            return reject(c, m.serving(), eval, d.reasons(), d.codes());
        }
        getContext().ask(statusClass(), registry, Duration.ofSeconds(30),
                (ActorRef<StatusReply<AdapterRegistry.Entry>> r) -> new AdapterRegistryActor.SetAlias(c.version(), r),
                (r, err) -> new AliasMoved(c, m.serving(), eval, d, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onAliasMoved(AliasMoved m) {
        Optional<AdapterVersion> prev = m.serving().map(AdapterRegistry.Entry::version);
        if (m.reply().isError()) {
            return reject(m.candidate(), m.serving(), m.eval(), List.of("alias move failed: " + m.reply().getError().getMessage()),
                    List.of("error"));
        }
        audit("promoted", m.candidate().version(), prev, m.eval(), m.decision().reasons());
        decided(m.candidate().version(), "promoted", List.of(), m.decision().reasons());
        getContext().getLog().info("supervisor: promoted {} (was {}): {}", m.candidate().version(),
                prev.map(Object::toString).orElse("base"), m.decision().reasons());
        Promoted p = new Promoted(m.candidate().version(), m.reply().getValue().dir(), prev, "promotion", m.decision().reasons());
        listeners.forEach(l -> l.tell(p));
        return next();
    }

    private Behavior<Command> reject(CandidateReady c, Optional<AdapterRegistry.Entry> serving, EvaluatorActor.Evaluation eval,
                                     List<String> reasons, List<String> codes) {
        Optional<AdapterVersion> sv = serving.map(AdapterRegistry.Entry::version);
        audit("rejected", c.version(), sv, eval, reasons);
        decided(c.version(), "rejected", codes, reasons);
        getContext().getLog().info("supervisor: rejected {}: {}", c.version(), reasons);
        Rejected r = new Rejected(c.version(), sv, List.copyOf(reasons));
        listeners.forEach(l -> l.tell(r));
        return next();
    }

    private Behavior<Command> next() {
        busy = false;
        CandidateReady c = queue.poll();
        return c == null ? this : onCandidate(c);
    }

    private Behavior<Command> onRollback(Rollback m) {
        String domain = m.to().domain();
        getContext().ask(statusClass(), registry, Duration.ofSeconds(30),
                (ActorRef<StatusReply<Optional<AdapterRegistry.Entry>>> r) -> new AdapterRegistryActor.GetAlias(domain, r),
                (r, err) -> new RollbackFrom(m, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onRollbackFrom(RollbackFrom m) {
        Optional<AdapterVersion> from = m.reply().isSuccess() ? m.reply().getValue().map(AdapterRegistry.Entry::version) : Optional.empty();
        getContext().ask(statusClass(), registry, Duration.ofSeconds(30),
                (ActorRef<StatusReply<AdapterRegistry.Entry>> r) -> new AdapterRegistryActor.SetAlias(m.command().to(), r),
                (r, err) -> new RolledBack(m.command(), from, err != null ? StatusReply.error(err) : cast(r)));
        return this;
    }

    private Behavior<Command> onRolledBack(RolledBack m) {
        Rollback cmd = m.command();
        if (m.reply().isError()) {
            audit("rollback_failed", cmd.to(), m.from(), null, List.of(cmd.reason(), m.reply().getError().getMessage()));
            cmd.replyTo().tell(StatusReply.error("rollback to " + cmd.to() + " failed: " + m.reply().getError().getMessage()));
            return this;
        }
        audit("rolled_back", cmd.to(), m.from(), null, List.of(cmd.reason()));
        decided(cmd.to(), "rolled_back", List.of(), List.of(cmd.reason()));
        getContext().getLog().info("supervisor: rolled back {} -> {} ({})", m.from().map(Object::toString).orElse("base"),
                cmd.to(), cmd.reason());
        Promoted p = new Promoted(cmd.to(), m.reply().getValue().dir(), m.from(), "rollback", List.of(cmd.reason()));
        listeners.forEach(l -> l.tell(p));
        cmd.replyTo().tell(StatusReply.success(cmd.to()));
        return this;
    }

    private void decided(AdapterVersion v, String decision, List<String> codes, List<String> reasons) {
        MoraEvent.publish(getContext().getSystem(), new MoraEvent.Decided(v.domain(), v, decision, codes, reasons));
    }

    /** Appends one decision to the audit log and fsyncs it. */
    private void audit(String decision, AdapterVersion version, Optional<AdapterVersion> serving, EvaluatorActor.Evaluation eval,
                       List<String> reasons) {
        ObjectNode n = JSON.createObjectNode();
        n.put("time", Instant.now().toString());
        n.put("domain", version.domain());
        n.put("decision", decision);
        n.put("version", version.toString());
        n.put("serving", serving.map(Object::toString).orElse("base"));
        reasons.forEach(n.putArray("reasons")::add);
        if (eval != null) {
            n.set("candidate_scores", JSON.valueToTree(eval.candidate()));
            n.set("serving_scores", JSON.valueToTree(eval.serving()));
        }
        try {
            Files.createDirectories(auditLog.toAbsolutePath().getParent());
            byte[] line = (JSON.writeValueAsString(n) + "\n").getBytes(StandardCharsets.UTF_8);
            try (FileChannel ch = FileChannel.open(auditLog, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.APPEND)) {
                ch.write(java.nio.ByteBuffer.wrap(line));
                ch.force(true);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot append to the audit log " + auditLog, e);
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
