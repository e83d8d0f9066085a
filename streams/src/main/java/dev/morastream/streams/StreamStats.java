package dev.morastream.streams;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Counters of one {@link TrainingStream} (what a metrics registry reads); thread-safe. An
 * {@link Observer} set with {@link #observe} hears the same events with their labels (topic,
 * reason, domain), which is how the main job feeds its per-label Prometheus counters.
 */
public final class StreamStats {
    /** Records read from Kafka and decoded (good or rejected). */
    public final AtomicLong decoded = new AtomicLong();
    /** Records sent to the dead-letter topic (acknowledged). */
    public final AtomicLong rejected = new AtomicLong();
    /** Records whose last token reached the trainer in a batch. */
    public final AtomicLong recordsTrained = new AtomicLong();
    /** Batches the trainer took. */
    public final AtomicLong batches = new AtomicLong();
    /** Offset commits asked of Kafka (one may cover several partitions). */
    public final AtomicLong commits = new AtomicLong();
    /**
     * Records read but dropped because their partition was revoked from this consumer before they
     * were packed (its next owner reads them again from the committed offset).
     */
    public final AtomicLong discarded = new AtomicLong();

    /** Records of a domain this stream does not train (another stream does), passed over. */
    public final AtomicLong trainedElsewhere = new AtomicLong();
    /** Records rejected but not dead-lettered by this stream (another stream of the same topics letters them). */
    public final AtomicLong rejectedNotLettered = new AtomicLong();

    private volatile Observer observer = Observer.NONE;

    /** What happened, with labels. Called from stream threads: implementations must be thread-safe and quick. */
    public interface Observer {
        Observer NONE = new Observer() {};

        /** One record read from {@code topic} and decoded. */
        default void consumed(String topic) {}

        /** One record of {@code topic} acknowledged by the dead-letter topic, for {@code reason} (a reason code). */
        default void deadLettered(String topic, String reason) {}

        /** The trainer of {@code domain} took a batch completing {@code records} records. */
        default void batch(String domain, int records, long tokens) {}
    }

    /** Sets the observer (replacing any earlier one). */
    public StreamStats observe(Observer o) {
        this.observer = o == null ? Observer.NONE : o;
        return this;
    }

    void consumed(String topic) {
        decoded.incrementAndGet();
        observer.consumed(topic);
    }

    void deadLettered(String topic, String reason) {
        rejected.incrementAndGet();
        observer.deadLettered(topic, reason);
    }

    void batch(String domain, int records, long tokens) {
        batches.incrementAndGet();
        recordsTrained.addAndGet(records);
        observer.batch(domain, records, tokens);
    }

    /** Records read but not yet wholly handed to the trainer (or dead-lettered): what the stream holds. */
    public long inFlight() {
        return decoded.get() - rejected.get() - recordsTrained.get() - discarded.get() - trainedElsewhere.get()
                - rejectedNotLettered.get();
    }
}
