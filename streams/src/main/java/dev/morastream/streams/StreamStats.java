package dev.morastream.streams;

import java.util.concurrent.atomic.AtomicLong;

/** Counters of one {@link TrainingStream} (what a metrics registry reads); thread-safe. */
public final class StreamStats {
    /** Records read from Kafka and decoded (good or rejected). */
    public final AtomicLong decoded = new AtomicLong();
    /** Records sent to the dead-letter topic (acknowledged). */
    public final AtomicLong rejected = new AtomicLong();
    /** Records whose last token reached the trainer in a batch. */
    public final AtomicLong recordsTrained = new AtomicLong();
    /** Batches the trainer took. */
    public final AtomicLong batches = new AtomicLong();
    /** Offset commits sent to Kafka (one may cover several partitions). */
    public final AtomicLong commits = new AtomicLong();

    /** Records read but not yet wholly handed to the trainer (or dead-lettered): what the stream holds. */
    public long inFlight() {
        return decoded.get() - rejected.get() - recordsTrained.get();
    }
}
