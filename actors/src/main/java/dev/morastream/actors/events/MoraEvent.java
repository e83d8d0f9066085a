package dev.morastream.actors.events;

import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.registry.AdapterVersion;
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
     */
    record Stepped(String domain, long step, double lossBefore, double lossAfter, double lr, long tokens, long nanos)
            implements MoraEvent {}

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
     * @param decision {@code promoted}, {@code rejected}, {@code superseded} or {@code rolled_back}
     * @param codes short reason codes for labels (rejections: memorization, downstream, retention,
     *     non_finite, error, superseded)
     * @param reasons the human-readable reasons of the audit log
     */
    record Decided(String domain, AdapterVersion version, String decision, List<String> codes, List<String> reasons)
            implements MoraEvent {
        public Decided {
            codes = List.copyOf(codes);
            reasons = List.copyOf(reasons);
        }
    }

    /** Publishes {@code e} on {@code system}'s event stream. */
    static void publish(ActorSystem<?> system, MoraEvent e) {
        system.eventStream().tell(new EventStream.Publish<>(e));
    }
}
