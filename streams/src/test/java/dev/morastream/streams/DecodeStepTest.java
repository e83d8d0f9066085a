package dev.morastream.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.pack.Batches;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.Packer;
import dev.morastream.streams.records.DecodeResult;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.Rejected;
import dev.morastream.streams.records.RepeatedFailures;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Test;

/**
 * The stream's decode and pack path (a chunk at a time: {@link DecodeStep} with the byte fast path,
 * then {@link Packer#add(Packer.Encoded, List)}) against the simple per-record one (each record
 * through {@link RecordDecoder#decode}, then {@link Packer#naive}'s {@code add}): the same packed
 * batches and the same dead letters (reason, detail, record).
 */
class DecodeStepTest {
    private static final RecordDecoder.Config CONFIG = new RecordDecoder.Config(Set.of("law", "med"), "law", 2_000);

    @Test
    void aChunkOfVariedRecordsPacksAndRejectsAsThePerRecordPathDoes() {
        Random rnd = new Random(3);
        List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
        long[] next = new long[2];
        for (int i = 0; i < 3_000; i++) {
            int p = rnd.nextInt(2);
            ConsumerRecord<byte[], byte[]> r = new ConsumerRecord<>("t", p, next[p]++, null, value(rnd, i));
            r.headers().add(new RecordHeader(Ownership.TAG, java.nio.ByteBuffer.allocate(8).putLong(7).array()));
            if (rnd.nextInt(10) == 0) {
                r.headers().add(new RecordHeader(RecordDecoder.DOMAIN_HEADER, (rnd.nextBoolean() ? "med" : "tax").getBytes(StandardCharsets.UTF_8)));
            }
            records.add(r);
        }
        // the reference: one record at a time
        Packer naive = Packer.naive(new ByteTokenizer(), 31, 4);
        RecordDecoder decoder = new RecordDecoder(CONFIG);
        List<PackedBatch> expected = new ArrayList<>();
        List<String> expectedLetters = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : records) {
            ConsumerRecord<byte[], byte[]> copy = new ConsumerRecord<>(r.topic(), r.partition(), r.offset(), r.key(), r.value());
            for (var h : r.headers()) {
                if (!h.key().equals(Ownership.TAG)) {
                    copy.headers().add(h);
                }
            }
            DecodeResult d = decoder.decode(copy);
            if (d instanceof Rejected rj) {
                expectedLetters.add(letter(rj));
            }
            expected.addAll(naive.add(d));
        }
        expected.addAll(naive.flush());

        // the stream's way: chunks of up to 64 records
        Packer packer = new Packer(new ByteTokenizer(), 31, 4);
        StreamStats stats = new StreamStats();
        DecodeStep step = new DecodeStep(decoder, new ByteTokenizer(), packer, new RepeatedFailures(), stats, true);
        List<PackedBatch> actual = new ArrayList<>();
        List<String> letters = new ArrayList<>();
        for (int c = 0; c < records.size(); ) {
            int n = 1 + rnd.nextInt(64);
            for (DecodeStep.Decoded d : step.decode(records.subList(c, Math.min(records.size(), c + n)))) {
                assertEquals(7, d.ownership());
                assertTrue((d.encoded() == null) != (d.rejected() == null));
                if (d.encoded() != null) {
                    packer.add(d.encoded(), actual);
                } else {
                    letters.add(letter(d.rejected()));
                    packer.skip(d.tp(), d.offset());
                }
            }
            c += n;
        }
        actual.addAll(packer.flush());
        assertEquals(records.size(), stats.decoded.get());
        assertEquals(expectedLetters, letters);
        Batches.assertSame(expected, actual);
        assertTrue(letters.size() > 300 && expected.size() > 100, letters.size() + " letters, " + expected.size() + " batches");
    }

    private static String letter(Rejected r) {
        return r.reason().code() + " " + r.detail() + " " + r.topic() + "-" + r.partition() + "@" + r.offset();
    }

    /** ASCII, multi-byte UTF-8, escapes, invalid UTF-8, empty, oversized, prompt/completion, wrong types. */
    private static byte[] value(Random rnd, int i) {
        String text = switch (rnd.nextInt(4)) {
            case 0 -> "plain ascii text " + i;
            case 1 -> "ünïcödé 中文 😀 " + i;
            case 2 -> "line\\none \\\"q\\\" \\u00e9\\ud83d\\ude00 " + i;
            default -> "x".repeat(rnd.nextInt(200)) + i;
        };
        return switch (rnd.nextInt(14)) {
            case 0 -> new byte[0];
            case 1 -> new byte[] {'b', 'a', 'd', (byte) 0xc3, '(', ' '};
            case 2 -> ("{\"text\": \"" + "y".repeat(2_100) + "\"}").getBytes(StandardCharsets.UTF_8);
            case 3 -> ("{\"text\": 42}").getBytes(StandardCharsets.UTF_8);
            case 4 -> ("{\"text\": \"   \"}").getBytes(StandardCharsets.UTF_8);
            case 5 -> ("{\"text\": \"bell \\u0007\"}").getBytes(StandardCharsets.UTF_8);
            case 6 -> ("{\"id\": " + i + ", \"prompt\": \"Q " + text + "\", \"completion\": \"A " + i + "\"}").getBytes(StandardCharsets.UTF_8);
            case 7 -> ("{\"id\": \"r" + i + "\", \"domain\": \"med\", \"text\": \"" + text + "\"}").getBytes(StandardCharsets.UTF_8);
            case 8 -> (text.replace("\\", "/") + " as plain text").getBytes(StandardCharsets.UTF_8);
            case 9 -> ("{\"text\": \"" + text + "\", \"meta\": {\"n\": 1}}").getBytes(StandardCharsets.UTF_8);
            default -> ("{\"text\": \"" + text + "\"}").getBytes(StandardCharsets.UTF_8);
        };
    }
}
