package dev.morastream.streams;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.streams.pack.Packer;
import dev.morastream.streams.records.ByteRecordDecoder;
import dev.morastream.streams.records.DecodeResult;
import dev.morastream.streams.records.DomainRecord;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.RecordProcessingException;
import dev.morastream.streams.records.Rejected;
import dev.morastream.streams.records.RepeatedFailures;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The decode step of a {@link TrainingStream}: a chunk of polled records at a time (one task on the
 * decode dispatcher per chunk, not one future per record), each record to its framed tokens or to
 * why it is rejected. With a {@link ByteTokenizer} the common records go the fast way
 * ({@link ByteRecordDecoder}: bytes straight to ids, no strings); every other record, and every
 * rejection, goes the reference way ({@link RecordDecoder} then {@link Packer#encode}). Built with
 * {@code fast = false}, every record goes the reference way: what the fast way is tested against.
 * Thread-safe (chunks may be decoded at once).
 */
final class DecodeStep {
    /**
     * One record decoded, with the ownership it was fetched under: its tokens, or why it is rejected
     * (exactly one of the two is set).
     */
    record Decoded(TopicPartition tp, long offset, long ownership, Packer.Encoded encoded, Rejected rejected) {}

    private static final Logger log = LoggerFactory.getLogger(DecodeStep.class);

    private final RecordDecoder decoder;
    private final ByteRecordDecoder bytes;
    private final Packer packer;
    private final RepeatedFailures failures;
    private final StreamStats stats;

    /**
     * @param packer only its {@link Packer#encode} is used (thread-safe)
     * @param fast decode with {@link ByteRecordDecoder} where the tokenizer is a {@link ByteTokenizer}
     */
    DecodeStep(RecordDecoder decoder, TextTokenizer tokenizer, Packer packer, RepeatedFailures failures, StreamStats stats,
               boolean fast) {
        this.decoder = decoder;
        this.bytes = fast && tokenizer instanceof ByteTokenizer
                ? new ByteRecordDecoder(decoder.config(), tokenizer.bos()) : null;
        this.packer = packer;
        this.failures = failures;
        this.stats = stats;
    }

    /**
     * Decodes a chunk of records, in order: removes each one's ownership tag ({@link Ownership#untag})
     * and counts it as consumed. An {@link Error} fails the chunk, naming the record (for
     * {@link RepeatedFailures}).
     */
    List<Decoded> decode(List<ConsumerRecord<byte[], byte[]>> chunk) {
        List<Decoded> out = new ArrayList<>(chunk.size());
        TopicPartition tp = null;
        String idPrefix = null;
        for (ConsumerRecord<byte[], byte[]> r : chunk) {
            long ownership = Ownership.untag(r);
            if (tp == null || tp.partition() != r.partition() || !tp.topic().equals(r.topic())) {
                tp = new TopicPartition(r.topic(), r.partition());
                idPrefix = ByteRecordDecoder.idPrefix(r.topic(), r.partition());
            }
            out.add(decode(r, tp, idPrefix, ownership));
            stats.consumed(r.topic());
        }
        return out;
    }

    /**
     * Decodes and tokenizes one record. A record the stream failed on too often is rejected as
     * {@code repeated-failure} without being looked at; an exception while decoding or tokenizing
     * rejects the record as {@code processing-error}; an {@link Error} fails the stream, naming the
     * record (for {@link RepeatedFailures}).
     */
    private Decoded decode(ConsumerRecord<byte[], byte[]> r, TopicPartition tp, String idPrefix, long ownership) {
        Rejected poison = failures.poison(r);
        if (poison != null) {
            log.warn("dead-lettering {}-{}@{} and going on: {}", r.topic(), r.partition(), r.offset(), poison.detail());
            return new Decoded(tp, r.offset(), ownership, null, poison);
        }
        try {
            ByteRecordDecoder.Tokens t = bytes == null ? null : bytes.decode(r, idPrefix);
            if (t != null) {
                return new Decoded(tp, r.offset(), ownership,
                        Packer.Encoded.ofBytes(tp, r.offset(), t.id(), t.domain(), t.completion(), t.bytes(), t.promptEnd()), null);
            }
            DecodeResult d = decoder.decode(r);
            return d instanceof DomainRecord rec ? new Decoded(tp, r.offset(), ownership, packer.encode(rec), null)
                    : new Decoded(tp, r.offset(), ownership, null, (Rejected) d);
        } catch (Exception e) {
            log.warn("record {}-{}@{} could not be processed; dead-lettering it: {}", r.topic(), r.partition(), r.offset(), e.toString());
            return new Decoded(tp, r.offset(), ownership, null, new Rejected(Rejected.Reason.PROCESSING_ERROR, e.toString(), r, e));
        } catch (Error e) {
            RecordProcessingException x = new RecordProcessingException(r.topic(), r.partition(), r.offset(), e);
            failures.failed(x); // counted before the stream fails, so before any restart meets the record again
            throw x;
        }
    }
}
