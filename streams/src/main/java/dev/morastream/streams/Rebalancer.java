package dev.morastream.streams;

import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.kafka.RestrictedConsumer;
import org.apache.pekko.kafka.javadsl.PartitionAssignmentHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The rebalance callbacks of a {@link TrainingStream} (run by the consumer, on its thread, inside
 * {@code poll}; the group waits for them).
 *
 * <p><b>Revoked</b> (and when the consumer stops): the partitions stop being this consumer's (records of
 * theirs still in the stream are dropped from now on), the packing stage finishes the records of
 * theirs that a batch has split and drops the rest of theirs, the trainer takes every batch emitted
 * until then and checkpoints ({@link BatchSink#flush}), and the offsets it made durable are
 * committed synchronously, per-domain positions in the metadata. Only then does the group move the
 * partitions. <b>Lost</b>: the same without checkpoint nor commit (another consumer may own them
 * already). <b>Assigned</b>: each domain resumes at the later of its own checkpoint's point and the
 * group's committed position; the consumer seeks to the earliest of these.
 */
final class Rebalancer implements PartitionAssignmentHandler {
    private static final Logger log = LoggerFactory.getLogger(Rebalancer.class);

    private final Set<String> domains;
    private final Map<String, Map<TopicPartition, ResumePoint>> checkpoint;
    private final Ownership ownership;
    private final PackingStage stage;
    private final CommitTracker tracker;
    private final SerialSink sink;
    private final StreamStats stats;
    private final Duration timeout;

    Rebalancer(Set<String> domains, Map<String, Map<TopicPartition, ResumePoint>> checkpoint, Ownership ownership,
               PackingStage stage, CommitTracker tracker, SerialSink sink, StreamStats stats, Duration timeout) {
        this.domains = Set.copyOf(domains);
        this.checkpoint = checkpoint;
        this.ownership = ownership;
        this.stage = stage;
        this.tracker = tracker;
        this.sink = sink;
        this.stats = stats;
        this.timeout = timeout;
    }

    @Override
    public void onAssign(Set<TopicPartition> assigned, RestrictedConsumer consumer) {
        if (assigned.isEmpty()) {
            return;
        }
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned);
        Map<TopicPartition, Long> seeks = new HashMap<>();
        for (TopicPartition tp : assigned) {
            OffsetAndMetadata c = committed.get(tp);
            Map<String, ResumePoint> points = resumePoints(domains, checkpoint, tp, c);
            Long seek = points.size() == domains.size()
                    ? points.values().stream().mapToLong(ResumePoint::offset).min().orElseThrow() : null;
            if (seek != null) {
                consumer.seek(tp, seek);
                seeks.put(tp, seek);
            }
            long id = ownership.nextId();
            stage.assign(tp, points);
            Map<String, Long> offsets = new HashMap<>();
            points.forEach((d, p) -> offsets.put(d, p.offset()));
            tracker.assign(tp, id, seek, offsets);
            ownership.own(tp, id);
        }
        log.info("assigned {}, seeking {}", assigned, seeks);
    }

    /**
     * Per domain, where it resumes in {@code tp}: the later of its checkpoint's point and the group's
     * committed position (the committed offset, or the domain's own offset in the commit's metadata
     * when that is further on). A domain with neither has no point.
     */
    static Map<String, ResumePoint> resumePoints(Set<String> domains, Map<String, Map<TopicPartition, ResumePoint>> checkpoint,
                                                 TopicPartition tp, OffsetAndMetadata committed) {
        Map<String, Long> ahead = committed == null ? Map.of() : CommitTracker.parseMetadata(committed.metadata());
        Map<String, ResumePoint> points = new HashMap<>();
        for (String d : domains) {
            ResumePoint p = checkpoint.getOrDefault(d, Map.of()).get(tp);
            if (committed != null) {
                ResumePoint group = ResumePoint.at(Math.max(committed.offset(), ahead.getOrDefault(d, committed.offset())));
                p = p == null ? group : ResumePoint.later(p, group);
            }
            if (p != null) {
                points.put(d, p);
            }
        }
        return points;
    }

    @Override
    public void onRevoke(Set<TopicPartition> revoked, RestrictedConsumer consumer) {
        handOver(revoked, consumer, "revoked");
    }

    @Override
    public void onStop(Set<TopicPartition> current, RestrictedConsumer consumer) {
        try {
            handOver(current, consumer, "stopping");
        } catch (RuntimeException e) {
            log.error("could not hand over {} on stop", current, e);
        }
    }

    @Override
    public void onLost(Set<TopicPartition> lost, RestrictedConsumer consumer) {
        Set<TopicPartition> mine = ownership.disown(lost);
        if (mine.isEmpty()) {
            return;
        }
        try {
            stage.release(mine, timeout);
        } catch (TimeoutException e) {
            log.warn("partitions {} lost while the stream did not answer", mine);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        tracker.forget(mine);
        log.warn("lost {}: what was trained of them since the last commit will be trained again by their next owner", mine);
    }

    private void handOver(Set<TopicPartition> tps, RestrictedConsumer consumer, String why) {
        Set<TopicPartition> mine = ownership.disown(tps);
        if (mine.isEmpty()) {
            return;
        }
        try {
            PackingStage.Released released = stage.release(mine, timeout);
            stage.awaitTrained(released.barrier(), timeout);
            Map<String, Map<TopicPartition, Long>> durable =
                    sink.flush().toCompletableFuture().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            durable.forEach(tracker::durable);
            // a domain whose trainer made everything of it durable (or that trained nothing here) is
            // as far on as the partition was read, but for its records dropped for the next owner:
            // without this, a partition whose last records are all of one domain stays committed at
            // the other domains' last batch (the lag never reaches 0, until they train again)
            released.positions().forEach((d, pos) -> {
                if (durable.containsKey(d) || !stage.emitted(d)) {
                    tracker.durable(d, pos);
                }
            });
        } catch (TimeoutException | java.util.concurrent.ExecutionException e) {
            IllegalStateException failure = new IllegalStateException(
                    "cannot hand over " + mine + " (" + why + "): the trainer did not take its batches and checkpoint within "
                            + timeout + "; stopping rather than training records twice", e);
            stage.fail(failure);
            commit(consumer, tracker.handOver(mine)); // what is durable, at least
            throw failure;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while handing over " + mine, e);
        }
        Map<TopicPartition, CommitTracker.Commit> commits = tracker.handOver(mine);
        commit(consumer, commits);
        log.info("{} {}: committed {}", why, mine, commits);
    }

    private void commit(RestrictedConsumer consumer, Map<TopicPartition, CommitTracker.Commit> commits) {
        if (commits.isEmpty()) {
            return;
        }
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        commits.forEach((tp, c) -> offsets.put(tp, c.toKafka()));
        consumer.commitSync(offsets);
        stats.commits.incrementAndGet();
    }

    /** The trainer behind a gate that keeps its calls one at a time, in the order they were made. */
    static final class SerialSink {
        private final BatchSink sink;
        // per domain, the last call of that domain: a domain's batches reach its trainer in order, one at a time,
        // while different domains' trainers take theirs at once
        private final Map<String, CompletableFuture<?>> last = new HashMap<>();
        private CompletableFuture<?> lastFlush = CompletableFuture.completedFuture(null); // what a domain seen first waits for

        SerialSink(BatchSink sink) {
            this.sink = sink;
        }

        synchronized CompletableFuture<Map<TopicPartition, Long>> accept(PackedBatch b) {
            CompletableFuture<?> before = last.getOrDefault(b.domain(), lastFlush);
            CompletableFuture<Map<TopicPartition, Long>> f = before.handle((x, e) -> null).thenCompose(x -> sink.accept(b));
            last.put(b.domain(), f);
            return f;
        }

        /** After every batch accepted so far, of every domain; later batches wait for it. */
        synchronized CompletableFuture<Map<String, Map<TopicPartition, Long>>> flush() {
            CompletableFuture<?>[] all = last.values().stream().map(c -> c.handle((x, e) -> null)).toArray(CompletableFuture[]::new);
            CompletableFuture<Map<String, Map<TopicPartition, Long>>> f = CompletableFuture.allOf(all).thenCompose(x -> sink.flush());
            last.replaceAll((d, c) -> f);
            lastFlush = f;
            return f;
        }
    }
}
