package dev.morastream.streams;

import dev.morastream.streams.pack.PackedBatch;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.kafka.common.TopicPartition;

/**
 * Where packed batches go: implemented by the trainer (one call at a time, in order).
 *
 * <p>{@link #accept} completes once the trainer has taken the batch (the stream sends the next one
 * only then: this is the backpressure), with the Kafka offsets of the batch's domain that its
 * latest <em>durable</em> checkpoint holds (next offset to read per partition, from
 * {@link PackedBatch#resumeOffsets()} of this or an earlier batch; empty when nothing new is
 * durable). Only those are committed to Kafka. A trainer that checkpoints every N steps answers the
 * N-th batch with its offsets and the others with an empty map; one that checkpoints after every
 * batch may complete when the checkpoint is written.
 *
 * <p>{@link #flush} is called when partitions leave this consumer (a rebalance, or the stream
 * stopping), after every batch sent so far has been accepted: the trainer checkpoints now, so that
 * what it has trained of those partitions is committed before another consumer takes them on.
 */
@FunctionalInterface
public interface BatchSink {
    CompletionStage<Map<TopicPartition, Long>> accept(PackedBatch batch);

    /**
     * Makes everything accepted so far durable (a checkpoint now, if anything is new since the last
     * one) and completes with, per domain, the offsets its latest durable checkpoint then holds (as
     * {@link #accept} reports them: {@link PackedBatch#resumeOffsets()} of the domain's last batch).
     * Offsets reported by later calls must come from batches accepted after this call.
     *
     * <p>The default cannot checkpoint on demand and reports nothing new: the offsets committed at
     * a hand-over are then those already reported durable, and the next owner of a partition trains
     * again the records trained here since (at least once instead of exactly once, for those).
     */
    default CompletionStage<Map<String, Map<TopicPartition, Long>>> flush() {
        return CompletableFuture.completedFuture(Map.of());
    }
}
