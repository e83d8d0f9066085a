package dev.morastream.streams.records;

/**
 * The stream failed on one record (an {@link Error} while decoding or tokenizing it, or an
 * exception while packing it): what {@link RepeatedFailures} counts per source offset.
 */
public final class RecordProcessingException extends RuntimeException {
    private final String topic;
    private final int partition;
    private final long offset;

    public RecordProcessingException(String topic, int partition, long offset, Throwable cause) {
        super("processing " + topic + "-" + partition + "@" + offset + " failed: " + cause, cause);
        this.topic = topic;
        this.partition = partition;
        this.offset = offset;
    }

    public String topic() {
        return topic;
    }

    public int partition() {
        return partition;
    }

    public long offset() {
        return offset;
    }
}
