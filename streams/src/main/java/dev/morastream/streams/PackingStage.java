package dev.morastream.streams;

import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.Packer;
import dev.morastream.streams.pack.ResumePoint;
import dev.morastream.streams.records.RecordProcessingException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.common.TopicPartition;

/**
 * The packing stage of a {@link TrainingStream} and what the rebalance callbacks (on the consumer's
 * thread) ask of it. The {@link Packer} is touched only by the stream ({@link #onElement}); the
 * callbacks leave requests in an inbox that the stage handles before its next element (a chunk of
 * records, or a tick that comes at least every {@link #TICK} while the topic is quiet), and wait for their
 * effect with {@link #release} and {@link #awaitTrained}.
 *
 * <p>Batches are numbered as the stage emits them and counted as the trainer takes them
 * ({@link #trained}), in the same order: "every batch emitted before this release is trained" is
 * {@code trained >= barrier}.
 */
final class PackingStage {
    /** The longest a quiet stream goes without handling its inbox. */
    static final Duration TICK = Duration.ofMillis(100);

    /**
     * What flows into the stage: a chunk of decoded records (each with its tokens when it is to be
     * trained, encoded by the decode step, and the ownership it was fetched under), or a marker.
     */
    record Element(List<DecodeStep.Decoded> records, Kind kind) {
        enum Kind { RECORDS, TICK, END }

        static final Element TICK_ELEMENT = new Element(List.of(), Kind.TICK);
        static final Element END_ELEMENT = new Element(List.of(), Kind.END);

        static Element of(List<DecodeStep.Decoded> records) {
            return new Element(records, Kind.RECORDS);
        }
    }

    /**
     * What a release did: the number of batches emitted by then ({@code -1}: the stream had stopped)
     * and, per domain, where it stands in each released partition once they are absorbed
     * ({@link Packer#release(Set, Set, Map)}).
     */
    record Released(long barrier, Map<String, Map<TopicPartition, Long>> positions) {}

    private sealed interface Request permits Release, Assign {}

    private record Release(Set<TopicPartition> partitions, CompletableFuture<Released> barrier) implements Request {}

    private record Assign(TopicPartition partition, Map<String, ResumePoint> points) implements Request {}

    private final Packer packer;
    private final Ownership ownership;
    private final CommitTracker tracker;
    private final StreamStats stats;
    private final Duration idleFlush;
    private final Set<String> domains;
    /** Domains that had a batch emitted by this stage (read by the rebalance callbacks). */
    private final Set<String> emittedDomains = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final Queue<Request> inbox = new ConcurrentLinkedQueue<>();
    // the stream's thread only
    private long lastRecordNanos = System.nanoTime();
    private long emitted;

    // guarded by this
    private long trained;
    private boolean terminated;
    private RuntimeException failure;
    /** Positions of the partitions released at the end of the stream, for the hand-over at stop. */
    private Map<String, Map<TopicPartition, Long>> endPositions = Map.of();

    PackingStage(Packer packer, Set<String> domains, Ownership ownership, CommitTracker tracker, StreamStats stats,
                 Duration idleFlush) {
        this.packer = packer;
        this.domains = Set.copyOf(domains);
        this.ownership = ownership;
        this.tracker = tracker;
        this.stats = stats;
        this.idleFlush = idleFlush;
    }

    /** The stream's packing step: handles the inbox, then {@code e}; returns the batches to train, in order. */
    List<PackedBatch> onElement(Element e) {
        RuntimeException failed;
        synchronized (this) {
            failed = failure;
        }
        if (failed != null) {
            throw failed;
        }
        List<PackedBatch> out = new ArrayList<>();
        for (Request r = inbox.poll(); r != null; r = inbox.poll()) {
            if (r instanceof Release rel) {
                Map<String, Map<TopicPartition, Long>> positions = new java.util.HashMap<>();
                out.addAll(packer.release(rel.partitions(), domains, positions));
                note(out);
                // these are emitted (and trained) in order after this call
                rel.barrier().complete(new Released(emitted + out.size(), positions));
            } else if (r instanceof Assign a) {
                out.addAll(packer.assign(a.partition(), a.points()));
            }
        }
        switch (e.kind()) {
            case RECORDS -> {
                lastRecordNanos = System.nanoTime();
                for (DecodeStep.Decoded d : e.records()) {
                    TopicPartition tp = d.tp();
                    if (!ownership.isCurrent(tp, d.ownership())) {
                        stats.discarded.incrementAndGet(); // fetched before its partition was revoked: the next owner reads it
                        continue;
                    }
                    Packer.Encoded enc = d.encoded();
                    if (enc != null && !domains.contains(enc.domain())) {
                        enc = null; // another stream trains this domain: passed over, like a record without tokens
                        stats.trainedElsewhere.incrementAndGet();
                    }
                    tracker.record(tp, d.offset(), enc != null ? enc.domain() : null);
                    try {
                        if (enc != null) {
                            packer.add(enc, out);
                        } else {
                            packer.skip(tp, d.offset());
                        }
                    } catch (RuntimeException ex) {
                        throw new RecordProcessingException(tp.topic(), tp.partition(), d.offset(), ex);
                    }
                }
            }
            case TICK -> {
                if (idleFlush != null && System.nanoTime() - lastRecordNanos >= idleFlush.toNanos()) {
                    out.addAll(packer.flushIdle());
                }
            }
            case END -> { // finish split records: nothing stays half-trained
                Map<String, Map<TopicPartition, Long>> positions = new java.util.HashMap<>();
                out.addAll(packer.release(packer.partitions(), domains, positions));
                synchronized (this) {
                    endPositions = positions;
                }
            }
        }
        note(out);
        emitted += out.size();
        return out;
    }

    private void note(List<PackedBatch> batches) {
        for (PackedBatch b : batches) {
            emittedDomains.add(b.domain());
        }
    }

    /** Whether a batch of {@code domain} was emitted by this stage (so its trainer has something of it to make durable). */
    boolean emitted(String domain) {
        return emittedDomains.contains(domain);
    }

    /** The trainer took the next batch. */
    synchronized void trained() {
        trained++;
        notifyAll();
    }

    /** The stream stopped: nothing more will be packed or trained; waiters go on. */
    synchronized void terminated() {
        terminated = true;
        for (Request r = inbox.poll(); r != null; r = inbox.poll()) {
            if (r instanceof Release rel) {
                rel.barrier().complete(new Released(-1, restrict(endPositions, rel.partitions())));
            }
        }
        notifyAll();
    }

    /** Makes the stream fail at its next element (a rebalance could not keep the guarantee). */
    synchronized void fail(RuntimeException e) {
        failure = e;
    }

    /**
     * Asks the stage to {@link Packer#release release} {@code partitions} and waits until it has:
     * returns the number of batches it has emitted by then (the release's own included), or -1 when
     * the stream has stopped (with the positions its end left in those partitions), and the
     * positions of the domains there.
     */
    Released release(Set<TopicPartition> partitions, Duration timeout) throws TimeoutException, InterruptedException {
        CompletableFuture<Released> barrier = new CompletableFuture<>();
        synchronized (this) {
            if (terminated) {
                return new Released(-1, restrict(endPositions, partitions));
            }
            inbox.add(new Release(Set.copyOf(partitions), barrier));
        }
        try {
            return barrier.get(timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.ExecutionException e) {
            throw new IllegalStateException(e.getCause());
        }
    }

    private static Map<String, Map<TopicPartition, Long>> restrict(Map<String, Map<TopicPartition, Long>> positions,
                                                                 Set<TopicPartition> partitions) {
        Map<String, Map<TopicPartition, Long>> out = new java.util.HashMap<>();
        positions.forEach((d, m) -> m.forEach((tp, off) -> {
            if (partitions.contains(tp)) {
                out.computeIfAbsent(d, x -> new java.util.HashMap<>()).put(tp, off);
            }
        }));
        return out;
    }

    /** Asks the stage to take on {@code partition} with these resume points before any record of it. */
    void assign(TopicPartition partition, Map<String, ResumePoint> points) {
        inbox.add(new Assign(partition, Map.copyOf(points)));
    }

    /** Waits until the trainer has taken the first {@code barrier} batches, or the stream has stopped. */
    synchronized void awaitTrained(long barrier, Duration timeout) throws TimeoutException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (trained < barrier && !terminated) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new TimeoutException("the trainer took " + trained + " of " + barrier + " batches within " + timeout);
            }
            wait(Math.max(1, left / 1_000_000));
        }
    }
}
