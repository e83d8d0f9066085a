package dev.morastream.streams.pack;

import dev.morastream.models.train.TrainBatch;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.TopicPartition;

/**
 * A batch of {@code B} packed sequences of {@code T + 1} tokens for one domain.
 *
 * @param domain the domain all its tokens come from
 * @param batch tokens {@code (B, T + 1)}, target mask {@code (B, T)} (0 only on flush padding, else
 *     {@code null}), completion mask {@code (B, T)} (1 on completion and text targets, 0 on prompt
 *     targets; {@code null} when the batch has no prompt/completion record)
 * @param ranges per partition, {@code [first offset this batch holds tokens of, resume offset after it)}
 * @param resume per partition the packer has seen, where this domain resumes once this batch is
 *     absorbed: what the trainer's checkpoint stores (see {@link dev.morastream.streams.pack.ResumePoint})
 * @param completedIds ids of the records whose last token (EOS) is in this batch, in packing order
 * @param sequence 0, 1, 2… per domain in the order batches were cut
 */
public record PackedBatch(String domain, TrainBatch batch, Map<TopicPartition, OffsetRange> ranges,
                          Map<TopicPartition, ResumePoint> resume, List<String> completedIds, long sequence) {
    public PackedBatch {
        ranges = Map.copyOf(ranges);
        resume = Map.copyOf(resume);
        completedIds = List.copyOf(completedIds);
    }

    /** The Kafka offsets (next to read) that are safe to commit once this batch is durable, for this domain. */
    public Map<TopicPartition, Long> resumeOffsets() {
        Map<TopicPartition, Long> m = new java.util.HashMap<>();
        resume.forEach((tp, p) -> m.put(tp, p.offset()));
        return m;
    }
}
