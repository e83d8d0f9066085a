package dev.morastream.actors.serving;

import dev.morastream.models.generate.DecodeBatch;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The serving actor of a {@link ServingPool}: one actor owns one {@link DecodeBatch} (so nothing
 * mutable is shared: the batch, its KV cache and the waiting requests are this actor's alone) and
 * runs the continuous-batching loop on {@link #DISPATCHER}. Each {@link Step} admits waiting
 * requests into free rows (prefilled together in one forward), then decodes one token for
 * every row in one forward; rows that ended leave, and the actor tells itself the next step, so
 * requests submitted meanwhile join between steps. It idles when no row runs and none waits.
 * The waiting queue is bounded before a request reaches it ({@link ServingPool#submit} refuses
 * with 429 when running + waiting would exceed rows + capacity), so the mailbox never grows
 * without limit.
 */
final class ServingActor {
    /** Where the batch loop runs (see this module's reference.conf). */
    static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.serving.dispatcher");

    private ServingActor() {}

    /** One request as the batch loop sees it; both methods run on the actor and never throw. */
    interface Job {
        /**
         * Resolves the version: what to join the batch with.
         *
         * @return the request, or {@code null} when it ended already (cancelled while it waited,
         *     unknown model, a failed load): it has then completed its future itself
         */
        DecodeBatch.Request start();

        /** The row left the batch, done (a result or a failure). */
        void end(DecodeBatch.Row row);
    }

    /** Messages of the batch loop. */
    sealed interface Msg {}

    /** A request to generate. */
    record Submit(Job job) implements Msg {}

    /** Admit waiting requests and decode one token for every row. */
    record Step() implements Msg {}

    /** Stop (the pool lets running requests finish first). */
    record Stop() implements Msg {}

    /** The batch loop over the batch {@code batch} makes (closed when the actor stops). */
    static Behavior<Msg> batcher(Supplier<DecodeBatch> batch) {
        return Behaviors.setup(ctx -> {
            DecodeBatch b = batch.get();
            Deque<Job> waiting = new ArrayDeque<>();
            Map<DecodeBatch.Row, Job> rows = new IdentityHashMap<>();
            boolean[] stepping = {false};
            Runnable next = () -> {
                if (!stepping[0] && (!waiting.isEmpty() || b.size() > 0)) {
                    stepping[0] = true;
                    ctx.getSelf().tell(new Step());
                }
            };
            return Behaviors.receive(Msg.class)
                    .onMessage(Submit.class, s -> {
                        waiting.add(s.job());
                        next.run();
                        return Behaviors.same();
                    })
                    .onMessage(Step.class, s -> {
                        stepping[0] = false;
                        List<Job> joining = new ArrayList<>();
                        List<DecodeBatch.Request> requests = new ArrayList<>();
                        while (b.size() + requests.size() < b.capacity() && !waiting.isEmpty()) {
                            Job j = waiting.poll();
                            DecodeBatch.Request q = j.start();
                            if (q != null) {
                                joining.add(j);
                                requests.add(q);
                            }
                        }
                        if (!requests.isEmpty()) { // one prefill forward for all that join now
                            List<DecodeBatch.Row> joined = b.join(requests);
                            for (int i = 0; i < joined.size(); i++) {
                                if (joined.get(i).done()) {
                                    joining.get(i).end(joined.get(i));
                                } else {
                                    rows.put(joined.get(i), joining.get(i));
                                }
                            }
                        }
                        if (b.size() > 0) {
                            for (DecodeBatch.Row row : b.step()) {
                                rows.remove(row).end(row);
                            }
                        }
                        next.run();
                        return Behaviors.same();
                    })
                    .onMessage(Stop.class, s -> Behaviors.stopped())
                    .onSignal(PostStop.class, s -> {
                        b.close();
                        return Behaviors.same();
                    })
                    .build();
        });
    }
}
