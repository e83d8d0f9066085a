package dev.morastream.streams.records;

import java.util.Objects;

/**
 * One usable training record: either plain {@code text} (continual pretraining) or a
 * {@code prompt} + {@code completion} pair (facts and instructions), never both.
 *
 * @param id the record's {@code id} field, else {@code topic-partition-offset}
 * @param domain a configured domain
 * @param text the text, or {@code null} for a prompt/completion record
 * @param prompt the prompt, or {@code null} for a text record
 * @param completion the completion, or {@code null} for a text record
 * @param topic source topic
 * @param partition source partition
 * @param offset source offset
 */
public record DomainRecord(String id, String domain, String text, String prompt, String completion,
                           String topic, int partition, long offset) implements DecodeResult {
    public DomainRecord {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(domain, "domain");
        if ((text == null) == (prompt == null) || (prompt == null) != (completion == null)) {
            throw new IllegalArgumentException("a record has text, or prompt and completion");
        }
    }

    public static DomainRecord text(String id, String domain, String text, String topic, int partition, long offset) {
        return new DomainRecord(id, domain, text, null, null, topic, partition, offset);
    }

    public static DomainRecord completion(String id, String domain, String prompt, String completion,
                                          String topic, int partition, long offset) {
        return new DomainRecord(id, domain, null, prompt, completion, topic, partition, offset);
    }

    public boolean isCompletion() {
        return prompt != null;
    }
}
