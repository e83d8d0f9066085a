package dev.morastream.actors.cluster;

import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
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
 */
public final class TrainingLease {
    private TrainingLease() {}

    /** What the node does with the lease. Both run off the actor's thread and complete when done. */
    public interface Holder {
        CompletionStage<Void> acquired();

        CompletionStage<Void> release();
    }

    /** What the lease understands (local messages only: the singleton manager sends HandOff on its node). */
    public sealed interface Command {}

    /** The singleton's stop message: release, then stop. */
    public enum HandOff implements Command { INSTANCE }

    private record Done(String what, Throwable error) implements Command {}

    /** Starts the lease's singleton manager on this node (it runs the lease only where the role is). */
    public static ActorRef<Command> init(ActorSystem<?> system, Holder holder) {
        return ClusterSingleton.get(system).init(SingletonActor.of(create(holder), "training-lease")
                .withStopMessage(HandOff.INSTANCE)
                .withSettings(ClusterSingletonSettings.create(system).withRole(ClusterSettings.TRAINER)));
    }

    static Behavior<Command> create(Holder holder) {
        return Behaviors.setup(ctx -> {
            ctx.getLog().info("training lease acquired on this node");
            ctx.pipeToSelf(holder.acquired(), (v, err) -> new Done("acquire", err));
            return Behaviors.receive(Command.class)
                    .onMessage(Done.class, d -> {
                        if (d.what().equals("acquire")) {
                            if (d.error() != null) {
                                ctx.getLog().error("training lease: starting training failed: {}", d.error().toString());
                            }
                            return Behaviors.same();
                        }
                        if (d.error() != null) {
                            ctx.getLog().error("training lease: releasing training failed: {}", d.error().toString());
                        }
                        ctx.getLog().info("training lease released");
                        return Behaviors.stopped();
                    })
                    .onMessageEquals(HandOff.INSTANCE, () -> {
                        ctx.getLog().info("training lease: handing over");
                        ctx.pipeToSelf(holder.release(), (v, err) -> new Done("release", err));
                        return Behaviors.same();
                    })
                    .build();
        });
    }
}
