package dev.morastream.streams.records;

import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The poison-loop breaker: counts, per source record (topic, partition, offset), the times a stream
 * failed on it ({@link RecordProcessingException}); from the {@link #THRESHOLD}-th on, the next
 * stream (restarted from the checkpoints, meeting the record again) dead-letters it as
 * {@link Rejected.Reason#REPEATED_FAILURE} instead of processing it, and goes on. Lives as long as
 * its {@link DeadLetters} (the job), across stream restarts. Thread-safe.
 */
public final class RepeatedFailures {
    /** Failures at one record after which it is dead-lettered and skipped. */
    public static final int THRESHOLD = 3;
    private static final int MAX_TRACKED = 10_000;
    private static final Logger log = LoggerFactory.getLogger(RepeatedFailures.class);

    private record Key(String topic, int partition, long offset) {}

    private record Count(int failures, Throwable last) {}

    private final Map<Key, Count> counts = new LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Key, Count> eldest) {
            return size() > MAX_TRACKED;
        }
    };

    /** Whether any failure was counted (read without the lock: the common case, none, costs no lock per record). */
    private volatile boolean any;

    /** The stream is failing on this record; returns how many times it has so far. */
    public synchronized int failed(RecordProcessingException e) {
        any = true;
        Key k = new Key(e.topic(), e.partition(), e.offset());
        Count c = counts.merge(k, new Count(1, e.getCause()), (a, b) -> new Count(a.failures() + 1, b.last()));
        if (c.failures() == THRESHOLD) {
            log.warn("the stream failed {} times at {}-{}@{} ({}): that record will be dead-lettered as {} and skipped",
                    THRESHOLD, e.topic(), e.partition(), e.offset(), e.getCause(), Rejected.Reason.REPEATED_FAILURE.code());
        } else {
            log.info("the stream failed at {}-{}@{} ({} of {} before it is skipped): {}", e.topic(), e.partition(), e.offset(),
                    c.failures(), THRESHOLD, e.getCause().toString());
        }
        return c.failures();
    }

    /** The rejection of {@code r} when it is a poison record (the stream failed on it often enough), else {@code null}. */
    public Rejected poison(ConsumerRecord<byte[], byte[]> r) {
        if (!any) {
            return null;
        }
        synchronized (this) {
            return poisonLocked(r);
        }
    }

    private Rejected poisonLocked(ConsumerRecord<byte[], byte[]> r) {
        Count c = counts.get(new Key(r.topic(), r.partition(), r.offset()));
        if (c == null || c.failures() < THRESHOLD) {
            return null;
        }
        return new Rejected(Rejected.Reason.REPEATED_FAILURE, "the stream failed " + c.failures() + " times at this record: "
                + c.last(), r, c.last());
    }

    /** Times the stream failed at this record. */
    public synchronized int failures(String topic, int partition, long offset) {
        Count c = counts.get(new Key(topic, partition, offset));
        return c == null ? 0 : c.failures();
    }
}
