package dev.morastream.streams.records;

/**
 * What a record's validation failed with, as the dead letter's {@code __connect.errors.exception.*}
 * headers name it (Kafka Connect's DLQ convention needs an exception class; a rejected record has
 * none of its own). Never thrown by the stream.
 */
public final class InvalidRecordException extends RuntimeException {
    private final Rejected.Reason reason;

    public InvalidRecordException(Rejected.Reason reason, String detail) {
        super(reason.code() + (detail == null ? "" : ": " + detail), null, false, false);
        this.reason = reason;
    }

    public Rejected.Reason reason() {
        return reason;
    }
}
