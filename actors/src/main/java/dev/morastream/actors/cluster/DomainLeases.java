package dev.morastream.actors.cluster;

import dev.morastream.actors.CborSerializable;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.sharding.typed.ClusterShardingSettings;
import org.apache.pekko.cluster.sharding.typed.ShardingEnvelope;
import org.apache.pekko.cluster.sharding.typed.ShardingMessageExtractor;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;

/**
 * The right to train a domain, held by exactly one node of the cluster: a Cluster Sharding entity
 * per domain (entity id = domain, one shard per domain) on the nodes with the {@code trainer} role.
 * Sharding's least-shard allocation spreads the domains over the trainer nodes and rebalances them
 * when a trainer node joins; when the entity of a domain starts on a node, that node
 * {@linkplain Holder#acquired acquires} the domain (restores its checkpoint and registry from the
 * state store, opens its writers — fencing any writer of the previous holder —, starts its trainer
 * and its stream); when the shard moves (rebalance, or its node leaving), the entity gets
 * {@link HandOff} and the node {@linkplain Holder#release releases} the domain (drains its stream,
 * writes the final checkpoint, commits its offsets) before the shard starts on the next node. A
 * node that dies is downed by the split-brain resolver; its shards start elsewhere at the next
 * keep-alive and resume from the last exported checkpoints.
 *
 * <p>Sharding starts an entity on its first message: every node that {@linkplain #init inits} the leases (each trainer node of {@code bin/mora run}) sends each
 * domain's entity a {@link Keep} every {@link #KEEP_ALIVE}, so every domain is trained as long as
 * one trainer node is up; automatic passivation is off (the lease never stops because it is idle).
 * Sharding runs at most one entity per id while the resolver keeps one side of a partition, and
 * starts a moved shard only after its previous entity has stopped: each domain's lineage has one
 * writer at any time.
 */
public final class DomainLeases {
    private DomainLeases() {}

    /** The entity type of the leases. */
    public static final EntityTypeKey<Command> KEY = EntityTypeKey.create(Command.class, "training-lease");

    /** How often every node makes sure every domain's lease runs somewhere. */
    public static final Duration KEEP_ALIVE = Duration.ofSeconds(2);

    /** What the node does with the lease of a domain. Both run off the actor's thread and complete when done. */
    public interface Holder {
        CompletionStage<Void> acquired(String domain);

        CompletionStage<Void> release(String domain);
    }

    /** What a lease understands. */
    public sealed interface Command {}

    /** Keeps the lease of a domain alive (sent from any node, so it crosses nodes). */
    public record Keep() implements Command, CborSerializable {}

    /** The stop message of the shard, sent on the lease's own node: release, then stop. */
    public enum HandOff implements Command { INSTANCE }

    private record Done(String what, Throwable error) implements Command {}

    /**
     * Starts sharding of the leases on this node (entities only where the role is; a proxy
     * elsewhere) and the keep-alive of {@code domains}.
     */
    public static void init(ActorSystem<?> system, List<String> domains, Holder holder) {
        ClusterSharding sharding = ClusterSharding.get(system);
        sharding.init(Entity.of(KEY, ctx -> create(ctx.getEntityId(), holder))
                .withRole(ClusterSettings.TRAINER)
                .withStopMessage(HandOff.INSTANCE)
                .withSettings(ClusterShardingSettings.create(system).withNoPassivationStrategy())
                .withMessageExtractor(new OneShardPerDomain()));
        List<String> all = List.copyOf(domains);
        system.scheduler().scheduleWithFixedDelay(Duration.ZERO, KEEP_ALIVE, () -> {
            for (String d : all) {
                sharding.entityRefFor(KEY, d).tell(new Keep());
            }
        }, system.executionContext());
    }

    /** Each domain is its own shard, so that allocation places (and moves) domains one by one. */
    static final class OneShardPerDomain extends ShardingMessageExtractor<ShardingEnvelope<Command>, Command> {
        @Override
        public String entityId(ShardingEnvelope<Command> envelope) {
            return envelope.entityId();
        }

        @Override
        public String shardId(String entityId) {
            return entityId;
        }

        @Override
        public Command unwrapMessage(ShardingEnvelope<Command> envelope) {
            return envelope.message();
        }
    }

    /** The lease of {@code domain}: acquired when it starts, released on {@link HandOff}, then stopped. */
    static Behavior<Command> create(String domain, Holder holder) {
        return Behaviors.setup(ctx -> {
            ctx.getLog().info("training lease of {} acquired on this node", domain);
            ctx.pipeToSelf(holder.acquired(domain), (v, err) -> new Done("acquire", err));
            boolean[] releasing = {false};
            return Behaviors.receive(Command.class)
                    .onMessage(Keep.class, k -> Behaviors.same())
                    .onMessage(Done.class, d -> {
                        if (d.what().equals("acquire")) {
                            if (d.error() != null) {
                                ctx.getLog().error("training lease of {}: starting training failed: {}", domain, d.error().toString());
                            }
                            return Behaviors.same();
                        }
                        if (d.error() != null) {
                            ctx.getLog().error("training lease of {}: releasing training failed: {}", domain, d.error().toString());
                        }
                        ctx.getLog().info("training lease of {} released", domain);
                        return Behaviors.stopped();
                    })
                    .onMessageEquals(HandOff.INSTANCE, () -> {
                        if (releasing[0]) {
                            return Behaviors.same(); // a second hand-over (a rebalance, then the node leaving): one release
                        }
                        releasing[0] = true;
                        ctx.getLog().info("training lease of {}: handing over", domain);
                        ctx.pipeToSelf(holder.release(domain), (v, err) -> new Done("release", err));
                        return Behaviors.same();
                    })
                    .build();
        });
    }
}
