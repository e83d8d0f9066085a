package dev.morastream.actors.cluster;

import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.typed.ClusterSingleton;
import org.apache.pekko.cluster.typed.ClusterSingletonSettings;
import org.apache.pekko.cluster.typed.SingletonActor;

/**
 * The right to train, held by exactly one node of the cluster: a cluster singleton on the nodes
 * with the {@code trainer} role (on the oldest of them). When it starts on a node, that node
 * {@linkplain Holder#acquired acquires} training — restores the checkpoints from the state store,
 * opens the domains' writers (fencing any writer of the previous holder), starts the trainers and
 * the stream; when its node leaves, the singleton is handed over: the node {@linkplain
 * Holder#release releases} training (drains its stream, writes final checkpoints, commits their
 * offsets) before the next oldest trainer node acquires it. A node that dies is downed by the
 * split-brain resolver, then the singleton starts elsewhere and resumes from the last exported
 * checkpoints. Pekko's singleton guarantees at most one instance while the resolver keeps one
 * side: so each domain's lineage has one writer at any time.
 *
 * <p>The singleton runs the behaviour of one {@link DomainLeases} lease, for every domain at once.
 */
public final class TrainingLease {
    private TrainingLease() {}

    /** What the lease stands for in the lease's log lines. */
    static final String EVERY_DOMAIN = "every domain";

    /** What the node does with the lease. Both run off the actor's thread and complete when done. */
    public interface Holder {
        CompletionStage<Void> acquired();

        CompletionStage<Void> release();
    }

    /** Starts the lease's singleton manager on this node (it runs the lease only where the role is). */
    public static ActorRef<DomainLeases.Command> init(ActorSystem<?> system, Holder holder) {
        DomainLeases.Holder everyDomain = new DomainLeases.Holder() {
            @Override
            public CompletionStage<Void> acquired(String domain) {
                return holder.acquired();
            }

            @Override
            public CompletionStage<Void> release(String domain) {
                return holder.release();
            }
        };
        return ClusterSingleton.get(system).init(SingletonActor.of(DomainLeases.create(EVERY_DOMAIN, everyDomain), "training-lease")
                .withStopMessage(DomainLeases.HandOff.INSTANCE)
                .withSettings(ClusterSingletonSettings.create(system).withRole(ClusterSettings.TRAINER)));
    }
}
