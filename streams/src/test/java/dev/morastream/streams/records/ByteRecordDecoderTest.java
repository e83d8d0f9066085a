package dev.morastream.streams.records;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.pack.Packer;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Test;

/**
 * The fast byte path against the reference ({@link RecordDecoder} then {@link Packer#encode}): on
 * every record it decides, the same id, domain, kind and tokens; on the common shapes it does decide.
 */
class ByteRecordDecoderTest {
    private static final RecordDecoder.Config CONFIG = new RecordDecoder.Config(Set.of("law", "med"), "law", 4_000);
    private final RecordDecoder reference = new RecordDecoder(CONFIG);
    private final ByteRecordDecoder fast = new ByteRecordDecoder(CONFIG, ByteTokenizer.BOS);
    private final Packer packer = new Packer(new ByteTokenizer(), 15, 2);

    private static ConsumerRecord<byte[], byte[]> rec(byte[] key, byte[] value) {
        return new ConsumerRecord<>("t", 2, 41, key, value);
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** Checks {@code r} both ways; returns whether the fast path decided it. */
    private boolean same(ConsumerRecord<byte[], byte[]> r) {
        ByteRecordDecoder.Tokens t = fast.decode(r);
        DecodeResult d = reference.decode(r);
        if (t == null) {
            return false;
        }
        String what = new String(r.value(), StandardCharsets.UTF_8);
        DomainRecord rec = assertInstanceOf(DomainRecord.class, d, () -> "fast accepted what the reference rejects: " + what);
        Packer.Encoded enc = packer.encode(rec);
        assertEquals(rec.id(), t.id(), what);
        assertEquals(rec.domain(), t.domain(), what);
        assertEquals(rec.isCompletion(), t.completion(), what);
        assertArrayEquals(enc.tokens(), t.framed(ByteTokenizer.BOS, ByteTokenizer.EOS), what);
        assertEquals(enc.promptEnd(), t.promptEnd(), what);
        return true;
    }

    /** The shapes producers send: each must go the fast way, and equal the reference. */
    @Test
    void decidesTheCommonShapesAsTheReferenceDoes() {
        String[] values = {
            "plain text, one line",
            "Héllo\tworld\nsecond line with ünïcödé and 中文 and 😀",
            "{\"text\": \"a json text\"}",
            "  \n{\"text\":\"lines\\none\\ttwo \\\"quoted\\\" back\\\\slash \\/ \\r\"}\n ",
            "{\"text\": \"escaped \\u00e9\\u4e2d\\ud83d\\ude00 and raw é中😀\"}",
            "{\"id\": \"rec-1\", \"domain\": \"med\", \"text\": \"x\"}",
            "{\"id\": 12345, \"text\": \"numbered\"}",
            "{\"id\": -7, \"text\": \"negative id\"}",
            "{\"id\": 0, \"text\": \"zero id\"}",
            "{\"prompt\": \"Q: who?\\n\", \"completion\": \"A: me\"}",
            "{\"prompt\": \"\", \"completion\": \"only completion\"}",
            "{\"text\": \"t\", \"source\": \"ignored field\", \"id\": null, \"prompt\": null}",
            "{\"text\": \"  leading and trailing spaces  \"}",
            "{\"text\": \"\\u00a0non-breaking space is not blank\"}",
        };
        for (String v : values) {
            assertTrue(same(rec(null, utf8(v))), () -> "not decided fast: " + v);
        }
        // the domain from the header, then from the key
        ConsumerRecord<byte[], byte[]> h = rec(utf8("law"), utf8("{\"text\":\"h\"}"));
        h.headers().add(new RecordHeader(RecordDecoder.DOMAIN_HEADER, utf8("med")));
        assertTrue(same(h));
        assertEquals("med", fast.decode(h).domain());
        assertTrue(same(rec(utf8("med"), utf8("keyed"))));
        assertEquals("med", fast.decode(rec(utf8("med"), utf8("keyed"))).domain());
        assertEquals("t-2-41", fast.decode(rec(null, utf8("x"))).id());
    }

    /** What the reference rejects, and the rarer shapes, are left to it. */
    @Test
    void leavesRejectionsAndRareShapesToTheReference() {
        List<byte[]> values = new ArrayList<>(List.of(
                new byte[0], utf8("   "), utf8("x".repeat(4_001)), new byte[] {'a', (byte) 0xc3}, new byte[] {'a', (byte) 0xed, (byte) 0xa0, (byte) 0x80},
                utf8("{\"text\": \"a\""), utf8("{\"text\": \"a\"} trailing"), utf8("{\"text\": \"a\", \"text\": \"b\"}"),
                utf8("{\"text\": 5}"), utf8("{\"text\": \"  \"}"), utf8("{\"prompt\": \"p\"}"), utf8("{\"text\": \"t\", \"prompt\": \"p\", \"completion\": \"c\"}"),
                utf8("{\"id\": 1.5, \"text\": \"x\"}"), utf8("{\"id\": \"\", \"text\": \"x\"}"), utf8("{\"id\": 007, \"text\": \"x\"}"),
                utf8("{\"text\": \"bell \\u0007\"}"), utf8("{\"text\": \"del \u007f\"}"), utf8("{\"text\": \"c1 \u0085\"}"), utf8("ctl \u0001"),
                utf8("{\"text\": \"lone \\ud800\"}"), utf8("{\"domain\": \"tax\", \"text\": \"x\"}"), utf8("{\"text\": \"x\", \"meta\": {\"a\": 1}}"),
                utf8("{\"te\\u0078t\": \"escaped key\"}"), utf8("{\"text\": \"raw\ttab\"}"), utf8("{}"), utf8("\u000b{\"text\":\"vt\"}"),
                utf8("\u00a0{\"text\":\"nbsp before\"}")));
        for (byte[] v : values) {
            ConsumerRecord<byte[], byte[]> r = rec(null, v);
            assertEquals(null, fast.decode(r), () -> "decided fast: " + new String(v, StandardCharsets.UTF_8));
        }
        ConsumerRecord<byte[], byte[]> badKey = rec(new byte[] {(byte) 0xff}, utf8("text"));
        assertEquals(null, fast.decode(badKey));
        assertInstanceOf(Rejected.class, reference.decode(badKey));
    }

    /** Random values built from JSON-ish pieces, and random mutations of them: never a difference. */
    @Test
    void agreesWithTheReferenceOnRandomValues() {
        Random rnd = new Random(11);
        String[] pieces = {"{", "}", "\"", "\\", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\x", ":", ",", " ", "\t", "\n",
            "\"text\"", "\"id\"", "\"domain\"", "\"prompt\"", "\"completion\"", "\"law\"", "\"med\"", "null", "12", "-3", "0",
            "abc", "é", "中", "😀", "\u0085", "\u007f", "\u0001", "\u00a0", "\u2028", "\"text\": \"", "{\"text\": \""};
        int decided = 0;
        for (int i = 0; i < 20_000; i++) {
            byte[] v;
            if (i % 3 == 0) { // a valid record, then maybe mutated bytes
                v = utf8(rnd.nextBoolean() ? "{\"id\": " + (rnd.nextBoolean() ? "\"r" + i + "\"" : Integer.toString(i)) + ", \"text\": \"" + word(rnd) + "\"}"
                        : "{\"prompt\": \"" + word(rnd) + "\", \"completion\": \"" + word(rnd) + "\"}");
                if (rnd.nextBoolean()) {
                    v[rnd.nextInt(v.length)] = (byte) rnd.nextInt(256);
                }
            } else {
                StringBuilder sb = new StringBuilder();
                for (int k = rnd.nextInt(12); k >= 0; k--) {
                    sb.append(pieces[rnd.nextInt(pieces.length)]);
                }
                v = utf8(sb.toString());
            }
            ConsumerRecord<byte[], byte[]> r = rec(rnd.nextInt(4) == 0 ? utf8(rnd.nextBoolean() ? "med" : "tax") : null, v);
            if (same(r)) {
                decided++;
            }
        }
        assertTrue(decided > 3_000, "the fast path decided only " + decided);
    }

    private static String word(Random rnd) {
        String[] w = {"a", "b c", "é", "\\n", "\\\"", "中文", "\\u4e2d", " ", "\\t", "😀", "\\ud83d\\ude00", "\\/"};
        StringBuilder sb = new StringBuilder();
        for (int k = rnd.nextInt(6); k >= 0; k--) {
            sb.append(w[rnd.nextInt(w.length)]);
        }
        return sb.toString();
    }

    @Test
    void utf8ValidationIsTheJdksAndPlainRunsAreExact() {
        Random rnd = new Random(5);
        byte[] alphabet = {'a', ' ', '"', '\\', 0x1f, 0x7f, (byte) 0x80, (byte) 0xbf, (byte) 0xc0, (byte) 0xc2, (byte) 0xdf, (byte) 0xe0,
            (byte) 0xa0, (byte) 0xed, (byte) 0x9f, (byte) 0xef, (byte) 0xf0, (byte) 0x90, (byte) 0xf4, (byte) 0x8f, (byte) 0xf5, (byte) 0xff};
        for (int i = 0; i < 200_000; i++) {
            byte[] b = new byte[rnd.nextInt(24)];
            for (int k = 0; k < b.length; k++) {
                b[k] = rnd.nextInt(3) == 0 ? (byte) rnd.nextInt(256) : alphabet[rnd.nextInt(alphabet.length)];
            }
            assertEquals(jdkValid(b), Utf8.valid(b, 0, b.length), () -> java.util.HexFormat.of().formatHex(b));
            int from = b.length == 0 ? 0 : rnd.nextInt(b.length);
            int naive = from;
            while (naive < b.length && Utf8.plain(b[naive])) {
                naive++;
            }
            assertEquals(naive, Utf8.plainRun(b, from, b.length), () -> java.util.HexFormat.of().formatHex(b));
        }
    }

    private static boolean jdkValid(byte[] b) {
        try {
            StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b));
            return true;
        } catch (CharacterCodingException e) {
            return false;
        }
    }

    @Test
    void withoutBosTheFramingIsTokensAndEos() {
        ByteRecordDecoder noBos = new ByteRecordDecoder(CONFIG, -1);
        ByteRecordDecoder.Tokens t = noBos.decode(rec(null, utf8("{\"prompt\":\"ab\",\"completion\":\"c\"}")));
        assertNotNull(t);
        assertArrayEquals(new int[] {'a', 'b', 'c', ByteTokenizer.EOS}, t.framed(-1, ByteTokenizer.EOS));
        assertEquals(2, t.promptEnd());
    }
}
