package dev.morastream.streams.records;

import java.util.Objects;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * A record that cannot be trained on, with why, and the original record (its bytes go to the
 * dead-letter topic unchanged).
 */
public record Rejected(Reason reason, String detail, ConsumerRecord<byte[], byte[]> source) implements DecodeResult {
    /** Why a record was rejected; {@link #code()} is the {@code x-reason} header of its dead letter. */
    public enum Reason {
        INVALID_UTF8("invalid-utf8"),
        EMPTY("empty"),
        TOO_LARGE("too-large"),
        MALFORMED_JSON("malformed-json"),
        WRONG_TYPE("wrong-type"),
        MISSING_FIELD("missing-field"),
        CONTROL_CHARACTERS("control-characters"),
        UNKNOWN_DOMAIN("unknown-domain");

        private final String code;

        Reason(String code) {
            this.code = code;
        }

        public String code() {
            return code;
        }
    }

    public Rejected {
        Objects.requireNonNull(reason, "reason");
        Objects.requireNonNull(source, "source");
    }

    @Override
    public String topic() {
        return source.topic();
    }

    @Override
    public int partition() {
        return source.partition();
    }

    @Override
    public long offset() {
        return source.offset();
    }
}
