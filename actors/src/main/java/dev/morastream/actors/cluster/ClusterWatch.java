package dev.morastream.actors.cluster;

import dev.morastream.actors.events.MoraEvent;
import java.util.List;
import java.util.Locale;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * Publishes every change of the cluster's membership and reachability as a
 * {@link MoraEvent.MemberChanged} on the event stream (metrics, the console).
 */
public final class ClusterWatch {
    private ClusterWatch() {}

    /** Whether {@code system}'s provider is the cluster's. */
    public static boolean clustered(org.apache.pekko.actor.typed.ActorSystem<?> system) {
        return "cluster".equals(system.settings().config().getString("pekko.actor.provider"));
    }

    public static Behavior<ClusterEvent.ClusterDomainEvent> create() {
        return Behaviors.setup(ctx -> {
            Cluster cluster = Cluster.get(ctx.getSystem());
            cluster.subscriptions().tell(Subscribe.create(ctx.getSelf().narrow(), ClusterEvent.MemberEvent.class));
            cluster.subscriptions().tell(Subscribe.create(ctx.getSelf().narrow(), ClusterEvent.ReachabilityEvent.class));
            return Behaviors.receive(ClusterEvent.ClusterDomainEvent.class).onAnyMessage(e -> {
                Member m = null;
                String status = null;
                if (e instanceof ClusterEvent.MemberEvent me) {
                    m = me.member();
                    status = e instanceof ClusterEvent.MemberRemoved ? "removed" : me.member().status().toString().toLowerCase(Locale.ROOT);
                } else if (e instanceof ClusterEvent.UnreachableMember u) {
                    m = u.member();
                    status = "unreachable";
                } else if (e instanceof ClusterEvent.ReachableMember r) {
                    m = r.member();
                    status = "reachable";
                }
                if (m != null) {
                    ctx.getSystem().eventStream().tell(new org.apache.pekko.actor.typed.eventstream.EventStream.Publish<>(
                            new MoraEvent.MemberChanged("", m.address().toString(), status, m.getRoles().stream().filter(r -> !r.startsWith("dc-")).sorted().toList(),
                                    m.address().equals(cluster.selfMember().address()))));
                }
                return Behaviors.same();
            }).build();
        });
    }
}
