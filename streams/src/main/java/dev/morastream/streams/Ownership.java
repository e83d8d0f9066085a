package dev.morastream.streams;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Which partitions one stream's consumer owns now, each under an ownership id that is new at every
 * assignment, and the consumer that works with it ({@link #consumer}):
 *
 * <ul>
 *   <li>it tags every record it returns from {@code poll} with the ownership id of its partition at
 *       that moment (a header, removed by {@link #untag}). The rebalance callbacks run inside
 *       {@code poll} on the same thread, and Kafka returns records of a newly assigned partition only
 *       from its new position, so a record tagged with a partition's current id was fetched under the
 *       current ownership; one still in a buffer from before a revocation carries an old id and is
 *       dropped ({@link #isCurrent});</li>
 *   <li>it commits the offsets the stream asks for ({@link #requestCommits}) on its own thread,
 *       just before polling, and only those of ownerships still current: a commit asked for before a
 *       rebalance can never land after it and move a partition back that another consumer (or this
 *       one, seeking to the committed offset) has taken on since.</li>
 * </ul>
 *
 * Thread-safe.
 */
final class Ownership {
    static final String TAG = "morastream.ownership";
    private static final Logger log = LoggerFactory.getLogger(Ownership.class);

    private final Map<TopicPartition, Long> current = new HashMap<>();
    private final Map<TopicPartition, CommitTracker.Commit> pendingCommits = new HashMap<>();
    private long lastId;

    /** A new ownership id (for {@link #own}). */
    synchronized long nextId() {
        return ++lastId;
    }

    synchronized void own(TopicPartition tp, long id) {
        current.put(tp, id);
    }

    /** Ends the ownership of {@code tps}; returns those that were owned. */
    synchronized Set<TopicPartition> disown(Collection<TopicPartition> tps) {
        Set<TopicPartition> were = new HashSet<>();
        for (TopicPartition tp : tps) {
            if (current.remove(tp) != null) {
                were.add(tp);
            }
        }
        return were;
    }

    synchronized boolean isCurrent(TopicPartition tp, long id) {
        Long now = current.get(tp);
        return now != null && now == id;
    }

    /** Asks for commits (sent by the consumer on its next poll, if their ownerships are still current). */
    synchronized void requestCommits(Map<TopicPartition, CommitTracker.Commit> commits) {
        commits.forEach((tp, c) -> pendingCommits.merge(tp, c,
                (a, b) -> a.ownership() != b.ownership() ? (a.ownership() > b.ownership() ? a : b) : (a.offset() >= b.offset() ? a : b)));
    }

    private synchronized Map<TopicPartition, CommitTracker.Commit> takeCommits() {
        Map<TopicPartition, CommitTracker.Commit> out = new HashMap<>();
        pendingCommits.forEach((tp, c) -> {
            if (isCurrent(tp, c.ownership())) {
                out.put(tp, c);
            }
        });
        pendingCommits.clear();
        return out;
    }

    private synchronized byte[] tagOf(TopicPartition tp) {
        Long id = current.get(tp);
        return ByteBuffer.allocate(Long.BYTES).putLong(id == null ? 0 : id).array();
    }

    /** Removes the ownership tag from {@code r} and returns it (0: none). */
    static long untag(ConsumerRecord<byte[], byte[]> r) {
        Header h = r.headers().lastHeader(TAG);
        if (h == null) {
            return 0;
        }
        r.headers().remove(TAG);
        return ByteBuffer.wrap(h.value()).getLong();
    }

    /** The consumer for the stream: a {@link KafkaConsumer} that tags records and sends requested commits. */
    KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> properties) {
        return new TaggingConsumer(properties, this);
    }

    private static final class TaggingConsumer extends KafkaConsumer<byte[], byte[]> {
        private final Ownership ownership;

        TaggingConsumer(Map<String, Object> properties, Ownership ownership) {
            super(properties, new ByteArrayDeserializer(), new ByteArrayDeserializer());
            this.ownership = ownership;
        }

        @Override
        public ConsumerRecords<byte[], byte[]> poll(Duration timeout) {
            Map<TopicPartition, CommitTracker.Commit> commits = ownership.takeCommits();
            if (!commits.isEmpty()) {
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                commits.forEach((tp, c) -> offsets.put(tp, c.toKafka()));
                commitAsync(offsets, (done, e) -> {
                    if (e instanceof RetriableException || e instanceof RebalanceInProgressException) {
                        // typically a rebalance under way: again at the next poll, if still ours (and not superseded)
                        log.debug("commit of {} to be retried: {}", offsets, e.toString());
                        ownership.requestCommits(commits);
                    } else if (e != null) {
                        // a later commit, or the one at revocation, covers these offsets
                        log.warn("commit of {} failed: {}", offsets, e.toString());
                    }
                });
            }
            ConsumerRecords<byte[], byte[]> records = super.poll(timeout);
            for (TopicPartition tp : records.partitions()) {
                byte[] tag = ownership.tagOf(tp);
                for (ConsumerRecord<byte[], byte[]> r : records.records(tp)) {
                    r.headers().add(TAG, tag);
                }
            }
            return records;
        }
    }
}
