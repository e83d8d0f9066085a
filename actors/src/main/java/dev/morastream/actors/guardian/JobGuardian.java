package dev.morastream.actors.guardian;

import dev.morastream.actors.CborSerializable;
import dev.morastream.actors.cluster.ClusterWatch;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.registry.RegistryReplica;
import dev.morastream.actors.supervisor.PromotionPolicy;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.actors.trainer.CheckpointReplica;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Function;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.actor.typed.receptionist.ServiceKey;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.pattern.StatusReply;

/**
 * The root of a node's actors: it spawns the adapter registry, the evaluator, the promotion
 * supervisor and one {@link TrainerActor} per domain, watches the trainers, and is the one address
 * the process talks to — the training stream asks it for the trainers, the admin API moves aliases
 * through it, and a graceful stop collects every trainer's final checkpoint through it.
 *
 * <p>In a cluster, every guardian registers with the receptionist as the decision-maker of the
 * domains it trains ({@link #decides}); an admin move of a domain this node does not train goes to
 * the node that does. A node without domains (the {@code serving} role alone) spawns no
 * registry actor, evaluator or supervisor: it never decides.
 *
 * <p>What the process does with what happens (metrics, the console, switching serving, the
 * promotions topic) arrives through {@link Hooks}, called on the guardian's thread: a hook must
 * not block (hand slow work, such as loading an adapter, to an executor of its own).
 */
public final class JobGuardian extends AbstractBehavior<JobGuardian.Command> {

    /**
     * One trained domain: its trainer's settings, the copy of the base it trains on (its device),
     * and where its checkpoints are exported ({@code null}: the local disk only).
     */
    public record Domain(TrainerActor.Settings trainer, LlamaModel model, CheckpointReplica checkpoints) {
        public Domain(TrainerActor.Settings trainer, LlamaModel model) {
            this(trainer, model, null);
        }

        public String name() {
            return trainer.domain();
        }
    }

    /**
     * @param evalModel the frozen base the evaluator scores on
     * @param registry the registry the registry actor owns from now on (opened by the caller, so that
     *     opening errors surface there)
     * @param replica where versions and aliases are exported for other nodes ({@code null}: one node)
     * @param policies a domain's promotion gate
     * @param evalTimeout how long an evaluation may take before its candidate is rejected
     */
    public record Settings(List<Domain> domains, LlamaModel evalModel, TextTokenizer tokenizer, EvaluatorActor.Settings evaluator,
                           AdapterRegistry registry, RegistryReplica replica, Function<String, PromotionPolicy> policies, Path auditLog,
                           Duration evalTimeout) {
        public Settings {
            domains = List.copyOf(domains);
            Set<String> seen = new HashSet<>();
            for (Domain d : domains) {
                if (!seen.add(d.name())) {
                    throw new IllegalArgumentException("domain " + d.name() + " is listed twice");
                }
            }
        }
    }

    /** What the process hears. Called on the guardian's thread: never block in them. */
    public interface Hooks {
        /** Every {@link MoraEvent} published on the event stream. */
        void onEvent(MoraEvent event);

        /** An alias moved (gate, admin promote or rollback): serving should switch. */
        void onPromoted(PromotionSupervisor.Promoted promoted);

        /** The trainer of {@code domain} stopped for good (more failures than its supervision allows). */
        void onTrainerLost(String domain);
    }

    /** What the guardian understands. */
    public sealed interface Command {}

    /** The trainers by domain, for the stream's sink. */
    public record GetTrainers(ActorRef<Map<String, ActorRef<TrainerActor.Command>>> replyTo) implements Command {}

    /**
     * An operator's promote (or rollback) of {@code to}, forwarded to the supervisor of its domain
     * (on this node or the one that trains it); answered with the version now served there.
     */
    public record MoveAlias(AdapterVersion to, boolean rollback, String reason, ActorRef<StatusReply<AdapterVersion>> replyTo)
            implements Command, CborSerializable {}

    /**
     * Graceful stop of training, of {@code domains} (empty: every domain trained here): each one's
     * live trainer writes its final checkpoint; answered when all did (or failed to); then those
     * trainers are gone, and when no trainer is left the registry, evaluator and supervisor stop too
     * (a {@link StartTraining} may start them again).
     */
    public record Stop(Duration timeout, Set<String> domains, ActorRef<Stopped> replyTo) implements Command {
        public Stop {
            domains = Set.copyOf(domains);
        }

        /** Stops every domain trained here. */
        public Stop(Duration timeout, ActorRef<Stopped> replyTo) {
            this(timeout, Set.of(), replyTo);
        }
    }

    /**
     * @param finalCheckpoints a domain's final checkpoint (empty when there was nothing new to write)
     * @param failed domains whose trainer wrote none: it had stopped before, or its stop failed (reason)
     */
    public record Stopped(Map<String, Optional<Path>> finalCheckpoints, Map<String, String> failed) {}

    private record Event(MoraEvent event) implements Command {}

    private record Decision(PromotionSupervisor.Event event) implements Command {}

    private record Routed(MoveAlias move, Receptionist.Listing listing, Throwable error) implements Command {}

    private record TrainerStopped(String domain, Optional<Path> checkpoint, Throwable error) implements Command {}

    private static final Duration ROUTE_TIMEOUT = Duration.ofSeconds(10);

    private final Hooks hooks;
    private final Map<String, ActorRef<TrainerActor.Command>> trainers = new LinkedHashMap<>();
    private final Map<ActorRef<?>, String> domainOf = new LinkedHashMap<>();
    private ActorRef<PromotionSupervisor.Command> supervisor; // null: this node decides nothing (now)
    private ActorRef<AdapterRegistryActor.Command> registry;
    private final List<ActorRef<?>> trainingActors = new java.util.ArrayList<>(); // registry, evaluator, supervisor
    private int generation; // of the training actors: names stay unique when training starts again
    private final Map<String, Integer> spawned = new java.util.HashMap<>(); // trainers of a domain so far: unique names
    private final Set<String> lost = new HashSet<>();
    private ActorRef<Stopped> stopReply;
    private Set<String> stopping = Set.of(); // the domains the current Stop is about
    private final Map<String, Optional<Path>> stoppedWith = new LinkedHashMap<>();
    private final Map<String, String> stopFailures = new LinkedHashMap<>();

    /** The receptionist key of the guardian that decides for {@code domain} (the one training it). */
    public static ServiceKey<Command> decides(String domain) {
        return ServiceKey.create(Command.class, "mora-decides-" + AdapterVersion.checkDomain(domain));
    }

    /** A guardian that trains {@code settings}' domains from the start (one node, or a test). */
    public static Behavior<Command> create(Settings settings, Hooks hooks) {
        return Behaviors.setup(ctx -> {
            JobGuardian g = new JobGuardian(ctx, hooks);
            g.startTraining(settings);
            return g;
        });
    }

    /** A guardian that trains nothing until {@link StartTraining} (a cluster node waiting for the leases of its domains). */
    public static Behavior<Command> create(Hooks hooks) {
        return Behaviors.setup(ctx -> new JobGuardian(ctx, hooks));
    }

    /**
     * Spawns the trainers of {@code settings}' domains that do not train here yet (and first the
     * registry, evaluator and supervisor, from {@code settings}, when none run); answered with every
     * trainer. In a cluster the registry first catches up each new domain from the state store. After
     * a {@link Stop} of every domain they are gone and this starts them again.
     */
    public record StartTraining(Settings settings, ActorRef<Map<String, ActorRef<TrainerActor.Command>>> replyTo) implements Command {}

    private JobGuardian(ActorContext<Command> ctx, Hooks hooks) {
        super(ctx);
        this.hooks = hooks;
        ctx.getSystem().eventStream().tell(new EventStream.Subscribe<>(MoraEvent.class, ctx.messageAdapter(MoraEvent.class, Event::new)));
        if (ClusterWatch.clustered(ctx.getSystem())) {
            ctx.spawn(ClusterWatch.create(), "cluster-watch");
        }
    }

    private void startTraining(Settings s) {
        if (s.domains().stream().allMatch(d -> trainers.containsKey(d.name()))) {
            return;
        }
        ActorContext<Command> ctx = getContext();
        if (supervisor == null) {
            String g = generation++ == 0 ? "" : "-" + generation;
            registry = ctx.spawn(AdapterRegistryActor.create(s.registry(), s.replica()), "registry" + g,
                    DispatcherSelector.fromConfig("morastream.actors.blocking-dispatcher"));
            ActorRef<EvaluatorActor.Command> evaluator = ctx.spawn(EvaluatorActor.create(s.evalModel(), s.tokenizer(), s.evaluator()),
                    "evaluator" + g, EvaluatorActor.DISPATCHER);
            supervisor = ctx.spawn(PromotionSupervisor.create(registry, evaluator, s.policies(), s.auditLog(), s.evalTimeout()),
                    "supervisor" + g, PromotionSupervisor.DISPATCHER);
            supervisor.tell(new PromotionSupervisor.Subscribe(ctx.messageAdapter(PromotionSupervisor.Event.class, Decision::new)));
            trainingActors.addAll(List.of(registry, evaluator, supervisor));
        }
        for (Domain d : s.domains()) {
            if (trainers.containsKey(d.name())) {
                continue;
            }
            // before the trainer's first publish (the registry's mailbox keeps the order); nothing to do on one node
            registry.tell(new AdapterRegistryActor.CatchUp(d.name(), ctx.getSystem().ignoreRef()));
            int n = spawned.merge(d.name(), 1, Integer::sum);
            ActorRef<TrainerActor.Command> t = ctx.spawn(TrainerActor.create(d.trainer(), d.model(), s.tokenizer(), registry, supervisor,
                    d.checkpoints()),
                    "trainer-" + d.name() + (n == 1 ? "" : "-" + n), TrainerActor.DISPATCHER);
            ctx.watch(t);
            trainers.put(d.name(), t);
            domainOf.put(t, d.name());
            ctx.getSystem().receptionist().tell(Receptionist.register(decides(d.name()), ctx.getSelf()));
        }
    }

    /**
     * After a stop: the stopped domains' trainers go and the domains are no longer decided here; when
     * none is left, the training actors go too, and training may start again.
     */
    private void releaseTraining() {
        for (String d : stopping) {
            getContext().getSystem().receptionist().tell(Receptionist.deregister(decides(d), getContext().getSelf()));
            ActorRef<TrainerActor.Command> t = trainers.remove(d);
            getContext().unwatch(t);
            domainOf.remove(t);
            lost.remove(d);
        }
        if (!trainers.isEmpty() && supervisor != null) {
            supervisor.tell(new PromotionSupervisor.Forget(stopping)); // decided where they train now
        }
        if (trainers.isEmpty()) {
            trainingActors.forEach(getContext()::stop);
            trainingActors.clear();
            supervisor = null;
            registry = null;
        }
        stopReply = null;
        stopping = Set.of();
        stoppedWith.clear();
        stopFailures.clear();
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(GetTrainers.class, m -> {
                    m.replyTo().tell(Map.copyOf(trainers));
                    return this;
                })
                .onMessage(StartTraining.class, m -> {
                    if (stopReply != null) {
                        getContext().getLog().warn("training asked to start while it stops: it starts after the stop");
                    }
                    startTraining(m.settings());
                    m.replyTo().tell(Map.copyOf(trainers));
                    return this;
                })
                .onMessage(MoveAlias.class, this::onMove)
                .onMessage(Routed.class, this::onRouted)
                .onMessage(Event.class, m -> {
                    hooks.onEvent(m.event());
                    return this;
                })
                .onMessage(Decision.class, m -> {
                    if (m.event() instanceof PromotionSupervisor.Promoted p) {
                        hooks.onPromoted(p);
                    }
                    return this;
                })
                .onMessage(Stop.class, this::onStop)
                .onMessage(TrainerStopped.class, this::onTrainerStopped)
                .onSignal(Terminated.class, this::onTerminated)
                .build();
    }

    private Behavior<Command> onMove(MoveAlias m) {
        if (trainers.containsKey(m.to().domain())) {
            supervisor.tell(m.rollback() ? new PromotionSupervisor.Rollback(m.to(), m.reason(), m.replyTo())
                    : new PromotionSupervisor.Promote(m.to(), m.reason(), m.replyTo()));
        } else {
            getContext().ask(Receptionist.Listing.class, getContext().getSystem().receptionist(), ROUTE_TIMEOUT,
                    r -> Receptionist.find(decides(m.to().domain()), r), (listing, err) -> new Routed(m, listing, err));
        }
        return this;
    }

    private Behavior<Command> onRouted(Routed r) {
        ServiceKey<Command> key = decides(r.move().to().domain());
        Optional<ActorRef<Command>> owner = r.error() != null ? Optional.empty()
                : r.listing().getServiceInstances(key).stream().filter(g -> !g.equals(getContext().getSelf())).findFirst();
        if (owner.isEmpty()) {
            r.move().replyTo().tell(StatusReply.error("no node of the cluster trains domain '" + r.move().to().domain()
                    + "' now, so nobody can move its alias" + (r.error() == null ? "" : " (" + r.error().getMessage() + ")")));
        } else {
            owner.get().tell(r.move());
        }
        return this;
    }

    private Behavior<Command> onStop(Stop m) {
        if (stopReply != null) {
            getContext().getLog().warn("stop asked twice: the first one's answer is all there is");
            return this;
        }
        stopReply = m.replyTo();
        Set<String> which = new HashSet<>(m.domains().isEmpty() ? trainers.keySet() : m.domains());
        which.retainAll(trainers.keySet());
        stopping = Set.copyOf(which);
        for (Map.Entry<String, ActorRef<TrainerActor.Command>> e : trainers.entrySet()) {
            String domain = e.getKey();
            if (!stopping.contains(domain)) {
                continue;
            }
            if (lost.contains(domain)) {
                stopFailures.put(domain, "its trainer had stopped after repeated failures");
                continue;
            }
            getContext().askWithStatus(Optional.class, e.getValue(), m.timeout(), r -> new TrainerActor.Stop(castReply(r)),
                    (ckpt, err) -> new TrainerStopped(domain, castCheckpoint(ckpt), err));
        }
        return maybeStopped();
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static ActorRef<StatusReply<Optional<Path>>> castReply(ActorRef r) {
        return r;
    }

    @SuppressWarnings("unchecked")
    private static Optional<Path> castCheckpoint(Optional<?> ckpt) {
        return ckpt == null ? Optional.empty() : (Optional<Path>) ckpt;
    }

    private Behavior<Command> onTrainerStopped(TrainerStopped m) {
        if (m.error() == null) {
            stoppedWith.put(m.domain(), m.checkpoint());
        } else {
            stopFailures.put(m.domain(), String.valueOf(m.error().getMessage()));
        }
        return maybeStopped();
    }

    private Behavior<Command> maybeStopped() {
        if (stopReply != null && stoppedWith.size() + stopFailures.size() == stopping.size()) {
            stopReply.tell(new Stopped(Map.copyOf(stoppedWith), Map.copyOf(stopFailures)));
            releaseTraining();
        }
        return this;
    }

    private Behavior<Command> onTerminated(Terminated t) {
        String domain = domainOf.get(t.getRef());
        if (domain == null || stopping.contains(domain)) {
            return this; // stopping: the trainer's answer to Stop (or its timeout) says how it ended
        }
        lost.add(domain);
        hooks.onTrainerLost(domain);
        return this;
    }
}
