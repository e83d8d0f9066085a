package dev.morastream.streams.records;

import java.util.Objects;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * A record that cannot be trained on, with why, and the original record (its bytes go to the
 * dead-letter topic unchanged, or cut to fit there: see {@link DeadLetters}).
 *
 * @param error the exception behind a {@link Reason#PROCESSING_ERROR} or {@link Reason#REPEATED_FAILURE},
 *     else {@code null} (the dead letter then names {@link InvalidRecordException})
 */
public record Rejected(Reason reason, String detail, ConsumerRecord<byte[], byte[]> source, Throwable error)
        implements DecodeResult {
    /** Why a record was rejected; {@link #code()} is the {@code x-reason} header of its dead letter. */
    public enum Reason {
        INVALID_UTF8("invalid-utf8"),
        EMPTY("empty"),
        TOO_LARGE("too-large"),
        MALFORMED_JSON("malformed-json"),
        WRONG_TYPE("wrong-type"),
        MISSING_FIELD("missing-field"),
        CONTROL_CHARACTERS("control-characters"),
        UNKNOWN_DOMAIN("unknown-domain"),
        /** The {@code id} field is longer than {@link RecordDecoder#MAX_ID_LENGTH}, empty, or not printable. */
        INVALID_ID("invalid-id"),
        /** An exception while decoding, tokenizing or packing this record. */
        PROCESSING_ERROR("processing-error"),
        /** The stream failed {@link RepeatedFailures#THRESHOLD} times at this record: skipped (the poison-loop breaker). */
        REPEATED_FAILURE("repeated-failure");

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

    public Rejected(Reason reason, String detail, ConsumerRecord<byte[], byte[]> source) {
        this(reason, detail, source, null);
    }

    /** The reason code of {@code code} ({@code x-reason}), or empty. */
    public static java.util.Optional<Reason> reasonOf(String code) {
        for (Reason r : Reason.values()) {
            if (r.code().equals(code)) {
                return java.util.Optional.of(r);
            }
        }
        return java.util.Optional.empty();
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
