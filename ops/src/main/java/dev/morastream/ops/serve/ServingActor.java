package dev.morastream.ops.serve;

import java.util.ArrayDeque;
import java.util.Deque;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The serving actors of a {@link ServingPool}: N {@code ServingActor}s, each generating one request
 * at a time on {@link #DISPATCHER} (generation blocks for its whole length), fed by one
 * {@link Queue} actor that hands the next waiting request to whichever worker is free (work
 * pulling, so a long generation never holds up a request another worker could take). The queue's
 * length is bounded before a request reaches it ({@link ServingPool#submit} refuses with 429 when
 * running + waiting would exceed workers + capacity), so the mailboxes never grow without limit.
 */
final class ServingActor {
    /** Where generations run (see this module's reference.conf). */
    static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("morastream.serving.dispatcher");

    private ServingActor() {}

    /** Messages of the queue and its workers. */
    sealed interface Msg {}

    /** A request to generate: {@code work} runs it to completion (and never throws). */
    record Work(Runnable work) implements Msg {}

    /** A worker finished and can take the next request. */
    record Free(ActorRef<Msg> worker) implements Msg {}

    /** Stop the queue and its workers (requests already handed out finish first). */
    record Stop() implements Msg {}

    /** A worker: runs one {@link Work} and tells the queue it is free again. */
    static Behavior<Msg> worker(ActorRef<Msg> queue) {
        return Behaviors.setup(ctx -> {
            queue.tell(new Free(ctx.getSelf()));
            return Behaviors.receive(Msg.class)
                    .onMessage(Work.class, w -> {
                        try {
                            w.work().run();
                        } finally {
                            queue.tell(new Free(ctx.getSelf()));
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Stop.class, s -> Behaviors.stopped())
                    .build();
        });
    }

    /** The queue: spawns {@code workers} workers as its children and hands them the waiting requests in order. */
    static Behavior<Msg> queue(int workers) {
        return Behaviors.setup(ctx -> {
            Deque<Work> waiting = new ArrayDeque<>();
            Deque<ActorRef<Msg>> idle = new ArrayDeque<>();
            for (int i = 0; i < workers; i++) {
                ctx.spawn(worker(ctx.getSelf()), "worker-" + i, DISPATCHER);
            }
            return Behaviors.receive(Msg.class)
                    .onMessage(Work.class, w -> {
                        ActorRef<Msg> free = idle.poll();
                        if (free != null) {
                            free.tell(w);
                        } else {
                            waiting.add(w);
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Free.class, f -> {
                        Work next = waiting.poll();
                        if (next != null) {
                            f.worker().tell(next);
                        } else {
                            idle.add(f.worker());
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Stop.class, s -> Behaviors.stopped()) // stops the workers, its children
                    .build();
        });
    }
}
