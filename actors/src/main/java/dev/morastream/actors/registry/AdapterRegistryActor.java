package dev.morastream.actors.registry;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
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
 * The single writer of an {@link AdapterRegistry}: publishes and alias moves are serialised
 * through its mailbox. Every reply is a {@link StatusReply}; an I/O or argument error becomes an
 * error reply naming it, and the actor goes on. Spawn it on {@link #DISPATCHER} (file copies and
 * fsyncs block).
 */
public final class AdapterRegistryActor extends AbstractBehavior<AdapterRegistryActor.Command> {
    /** Where registry I/O runs. */
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.actors.blocking-dispatcher");

    /** What the registry actor understands. */
    public sealed interface Command {}

    /** Copies {@code adapterDir} in as the domain's next version. */
    public record Publish(String domain, Path adapterDir, Map<String, String> info,
                          ActorRef<StatusReply<AdapterRegistry.Entry>> replyTo) implements Command {}

    /** Points the domain's alias at {@code version} (which must still exist). */
    public record SetAlias(AdapterVersion version, ActorRef<StatusReply<AdapterRegistry.Entry>> replyTo) implements Command {}

    /** The entry the domain's alias points at, empty when none. */
    public record GetAlias(String domain, ActorRef<StatusReply<Optional<AdapterRegistry.Entry>>> replyTo) implements Command {}

    /** Every stored version of the domain, oldest first. */
    public record ListVersions(String domain, ActorRef<StatusReply<List<AdapterRegistry.Entry>>> replyTo) implements Command {}

    /**
     * Brings the registry up to the cluster's state store for {@code domain} before this node trains
     * it ({@link RegistryReplica#catchUp}); answered with the versions fetched (none without a replica).
     */
    public record CatchUp(String domain, ActorRef<StatusReply<List<AdapterVersion>>> replyTo) implements Command {}

    private final AdapterRegistry registry;
    private final RegistryReplica replica; // null: this node's registry is all there is

    public static Behavior<Command> create(AdapterRegistry registry) {
        return create(registry, null);
    }

    /**
     * As above, and every version published and alias moved is exported to {@code replica} (the
     * state store other nodes fetch from) before it is answered: a version other nodes cannot fetch
     * is never a candidate.
     */
    public static Behavior<Command> create(AdapterRegistry registry, RegistryReplica replica) {
        return Behaviors.setup(ctx -> new AdapterRegistryActor(ctx, registry, replica));
    }

    private AdapterRegistryActor(ActorContext<Command> ctx, AdapterRegistry registry, RegistryReplica replica) {
        super(ctx);
        this.registry = registry;
        this.replica = replica;
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Publish.class, this::onPublish)
                .onMessage(SetAlias.class, this::onSetAlias)
                .onMessage(GetAlias.class, this::onGetAlias)
                .onMessage(ListVersions.class, this::onList)
                .onMessage(CatchUp.class, m -> reply(m.replyTo(), "catch-up of " + m.domain(), () -> {
                    List<AdapterVersion> fetched = replica == null ? List.of() : replica.catchUp(registry, m.domain());
                    if (!fetched.isEmpty()) {
                        getContext().getLog().info("registry: caught up {} from the state store: {}", m.domain(), fetched);
                    }
                    return fetched;
                }))
                .build();
    }

    @FunctionalInterface
    private interface Io<T> {
        T run() throws Exception;
    }

    private <T> Behavior<Command> reply(ActorRef<StatusReply<T>> to, String what, Io<T> io) {
        try {
            to.tell(StatusReply.success(io.run()));
        } catch (Exception e) {
            getContext().getLog().warn("registry: {} failed: {}", what, e.toString());
            to.tell(StatusReply.error(what + " failed: " + e.getMessage()));
        }
        return this;
    }

    private Behavior<Command> onPublish(Publish m) {
        return reply(m.replyTo(), "publish " + m.domain(), () -> {
            AdapterRegistry.Entry e = registry.publish(m.domain(), m.adapterDir(), Map.of(), m.info());
            if (replica != null) {
                replica.export(registry, e);
            }
            getContext().getLog().info("registry: published {}", e.version());
            return e;
        });
    }

    private Behavior<Command> onSetAlias(SetAlias m) {
        return reply(m.replyTo(), "alias " + m.version(), () -> {
            if (replica != null) {
                // the cluster's store first: a move it refuses (this node's writer fenced, or the domain's lease
                // elsewhere) leaves the local alias, and so what this node serves, where the cluster has it
                replica.alias(m.version());
            }
            registry.setAlias(m.version());
            return registry.get(m.version()).orElseThrow();
        });
    }

    private Behavior<Command> onGetAlias(GetAlias m) {
        return reply(m.replyTo(), "alias of " + m.domain(), () -> {
            Optional<AdapterVersion> v = registry.alias(m.domain());
            return v.isEmpty() ? Optional.<AdapterRegistry.Entry>empty() : registry.get(v.get());
        });
    }

    private Behavior<Command> onList(ListVersions m) {
        return reply(m.replyTo(), "versions of " + m.domain(), () -> registry.versions(m.domain()));
    }
}
