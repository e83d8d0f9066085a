package dev.morastream.actors.events;

import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.supervisor.PromotionDecision;
import dev.morastream.actors.supervisor.RejectReason;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.eventstream.EventStream;

/**
 * What the actors did, published on the actor system's event stream for whoever watches (the main
 * job's metrics and progress log subscribe with {@code EventStream.Subscribe(MoraEvent.class, ref)}).
 * Publishing costs one message; nobody listening costs nothing.
 */
public sealed interface MoraEvent {
    /** The domain the event is about. */
    String domain();

    /**
     * One optimizer micro step.
     *
     * @param lossBefore loss on the batch before the update (progressive validation)
     * @param lossAfter loss after the update, NaN when not measured
     * @param tokens predicted positions in the batch
     * @param klToBase mean KL(base || adapted) on the batch's base rows, NaN when the term is off
     */
    record Stepped(String domain, long step, double lossBefore, double lossAfter, double lr, long tokens, long nanos,
                   double klToBase) implements MoraEvent {}

    /** A trainer gave up its state; {@code reason} is {@code nan}, {@code divergence} or {@code exception}. */
    record TrainFailed(String domain, String reason, String message) implements MoraEvent {}

    /** A trainer checkpoint was written (and will be published as a candidate). */
    record Checkpointed(String domain, long step, long nanos) implements MoraEvent {}

    /** The evaluator scored a candidate against the adapter in service (empty: the base model). */
    record Evaluated(String domain, AdapterVersion candidate, Optional<AdapterVersion> serving,
                     EvaluatorActor.Evaluation evaluation, long nanos) implements MoraEvent {}

    /**
     * The supervisor decided.
     *
     * @param codes reason codes for labels (rejections)
     * @param reasons the human-readable reasons of the audit log
     */
    record Decided(String domain, AdapterVersion version, PromotionDecision decision, List<RejectReason> codes, List<String> reasons)
            implements MoraEvent {
        public Decided {
            codes = List.copyOf(codes);
            reasons = List.copyOf(reasons);
        }
    }

    /**
     * A member of the cluster changed status (only with {@code morastream.cluster} on).
     *
     * @param domain always {@code ""}
     * @param address the member's address, e.g. {@code pekko://morastream@127.0.0.1:25520}
     * @param status {@code joining}, {@code up}, {@code leaving}, {@code exiting}, {@code removed},
     *     {@code unreachable} or {@code reachable}
     * @param roles its roles ({@code trainer}, {@code serving})
     * @param self whether it is this node
     */
    record MemberChanged(String domain, String address, String status, List<String> roles, boolean self) implements MoraEvent {
        public MemberChanged {
            roles = List.copyOf(roles);
        }
    }

    /**
     * A state file was found damaged and repaired around, at start or later.
     *
     * @param domain the domain it belongs to ({@code ""} when none)
     * @param file what was damaged
     * @param action {@code quarantined} (moved aside and skipped), {@code fallback} (an older or other
     *     valid state used instead), {@code fresh_start} (nothing valid left), {@code ignored}
     *     (not state: left alone), {@code skipped_lines} (torn lines of a log skipped)
     */
    record StateRepaired(String domain, String file, String action, String reason) implements MoraEvent {}

    /**
     * A decision could not be written to the audit log (it was made; the record is kept in memory
     * and retried with backoff until it lands).
     *
     * @param pending records waiting to be written
     */
    record AuditFailed(String domain, AdapterVersion version, PromotionDecision decision, String error, int attempt, int pending)
            implements MoraEvent {}

    /** A registry operation of the supervisor failed and is retried after {@code delayMillis}. */
    record SupervisorRetry(String domain, String operation, String error, int attempt, long delayMillis) implements MoraEvent {}

    /** Publishes {@code e} on {@code system}'s event stream. */
    static void publish(ActorSystem<?> system, MoraEvent e) {
        system.eventStream().tell(new EventStream.Publish<>(e));
    }
}
