package dev.morastream.streams;

import dev.morastream.streams.pack.PackedBatch;
import java.util.Map;
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
 */
@FunctionalInterface
public interface BatchSink {
    CompletionStage<Map<TopicPartition, Long>> accept(PackedBatch batch);
}
