package dev.morastream.streams.records;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.streams.records.Rejected.Reason;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Test;

class RecordDecoderTest {
    private final RecordDecoder decoder = new RecordDecoder(new RecordDecoder.Config(Set.of("law", "med"), "law", 100));

    static ConsumerRecord<byte[], byte[]> rec(String key, byte[] value) {
        return new ConsumerRecord<>("t", 2, 41, key == null ? null : key.getBytes(StandardCharsets.UTF_8), value);
    }

    static ConsumerRecord<byte[], byte[]> rec(String value) {
        return rec(null, value.getBytes(StandardCharsets.UTF_8));
    }

    private DomainRecord ok(ConsumerRecord<byte[], byte[]> r) {
        return assertInstanceOf(DomainRecord.class, decoder.decode(r));
    }

    private void rejected(Reason reason, ConsumerRecord<byte[], byte[]> r) {
        Rejected rj = assertInstanceOf(Rejected.class, decoder.decode(r), () -> "expected " + reason);
        assertEquals(reason, rj.reason(), rj.detail());
        assertTrue(rj.source() == r);
    }

    @Test
    void plainTextTakesTheDefaultDomainAndAnOffsetId() {
        DomainRecord d = ok(rec("Héllo\tworld\n"));
        assertEquals("Héllo\tworld\n", d.text());
        assertEquals("law", d.domain());
        assertEquals("t-2-41", d.id());
        assertEquals(41, d.offset());
    }

    @Test
    void jsonTextAndCompletionWithIdAndDomain() {
        DomainRecord t = ok(rec("  {\"text\":\"a fact\",\"id\":\"x1\",\"domain\":\"med\",\"extra\":[1]}"));
        assertEquals("a fact", t.text());
        assertEquals("x1", t.id());
        assertEquals("med", t.domain());
        DomainRecord c = ok(rec("{\"prompt\":\"Q?\",\"completion\":\" A.\",\"id\":7}"));
        assertTrue(c.isCompletion());
        assertEquals("Q?", c.prompt());
        assertEquals(" A.", c.completion());
        assertNull(c.text());
        assertEquals("7", c.id());
    }

    @Test
    void domainFromFieldThenHeaderThenKey() {
        ConsumerRecord<byte[], byte[]> r = rec("med", "text".getBytes(StandardCharsets.UTF_8));
        assertEquals("med", ok(r).domain());
        r.headers().add(new RecordHeader("domain", "law".getBytes(StandardCharsets.UTF_8)));
        assertEquals("law", ok(r).domain());
        ConsumerRecord<byte[], byte[]> j = rec("law", "{\"text\":\"x\",\"domain\":\"med\"}".getBytes(StandardCharsets.UTF_8));
        assertEquals("med", ok(j).domain());
    }

    @Test
    void everyKindOfBadRecordIsRejectedWithItsReason() {
        rejected(Reason.INVALID_UTF8, rec(null, new byte[] {'a', (byte) 0xc3, (byte) 0x28}));
        rejected(Reason.INVALID_UTF8, rec(null, new byte[] {(byte) 0xff}));
        rejected(Reason.EMPTY, rec(null, new byte[0]));
        rejected(Reason.EMPTY, rec(null, null));
        rejected(Reason.EMPTY, rec("  \n "));
        rejected(Reason.EMPTY, rec("{\"text\":\"   \"}"));
        rejected(Reason.TOO_LARGE, rec("x".repeat(101)));
        rejected(Reason.MALFORMED_JSON, rec("{\"text\": \"unterminated}"));
        rejected(Reason.MALFORMED_JSON, rec("{\"text\":\"a\"} trailing"));
        rejected(Reason.MALFORMED_JSON, rec("{\"text\":\"a\",\"text\":\"b\"}"));
        rejected(Reason.MALFORMED_JSON, rec("{\"text\":\"a\",\"prompt\":\"b\",\"completion\":\"c\"}"));
        rejected(Reason.WRONG_TYPE, rec("{\"text\":5}"));
        rejected(Reason.WRONG_TYPE, rec("{\"text\":\"a\",\"id\":[1]}"));
        rejected(Reason.WRONG_TYPE, rec("{\"prompt\":\"a\",\"completion\":{}}"));
        rejected(Reason.WRONG_TYPE, rec("{\"text\":\"a\",\"domain\":true}"));
        rejected(Reason.MISSING_FIELD, rec("{\"prompt\":\"a\"}"));
        rejected(Reason.MISSING_FIELD, rec("{\"id\":\"a\"}"));
        rejected(Reason.CONTROL_CHARACTERS, rec("bell\u0007"));
        rejected(Reason.CONTROL_CHARACTERS, rec("{\"text\":\"nul\\u0000\"}"));
        rejected(Reason.CONTROL_CHARACTERS, rec("c1 \u0085"));
        rejected(Reason.UNKNOWN_DOMAIN, rec("{\"text\":\"a\",\"domain\":\"chem\"}"));
        rejected(Reason.UNKNOWN_DOMAIN, rec("chem", "a".getBytes(StandardCharsets.UTF_8)));
        RecordDecoder noDefault = new RecordDecoder(new RecordDecoder.Config(Set.of("law"), null, 100));
        assertEquals(Reason.UNKNOWN_DOMAIN, ((Rejected) noDefault.decode(rec("a"))).reason());
    }

    @Test
    void recordIdsArePrintableAndAtMost256Characters() {
        RecordDecoder wide = new RecordDecoder(new RecordDecoder.Config(Set.of("law"), "law", 10_000));
        java.util.function.Function<String, Rejected.Reason> reasonOf = id -> {
            DecodeResult d = wide.decode(rec("{\"text\":\"a\",\"id\":" + com.fasterxml.jackson.databind.node.TextNode.valueOf(id) + "}"));
            return d instanceof Rejected r ? r.reason() : null;
        };
        assertNull(reasonOf.apply("x".repeat(256)));
        assertNull(reasonOf.apply("fact 7: Zürich, 東京 🚀"));
        assertEquals(Reason.INVALID_ID, reasonOf.apply("x".repeat(257)));
        assertEquals(Reason.INVALID_ID, reasonOf.apply(""));
        assertEquals(Reason.INVALID_ID, reasonOf.apply("two\nlines")); // one ledger line per id
        assertEquals(Reason.INVALID_ID, reasonOf.apply("tab\there"));
        assertEquals(Reason.INVALID_ID, reasonOf.apply("zero\u200bwidth"));
        assertEquals(Reason.INVALID_ID, reasonOf.apply("line\u2028sep"));
        DecodeResult lone = wide.decode(rec("{\"text\":\"a\",\"id\":\"lone \\ud800 surrogate\"}")); // a JSON escape: no UTF-8 can carry it
        assertEquals(Reason.INVALID_ID, assertInstanceOf(Rejected.class, lone).reason());
        assertNull(reasonOf.apply("🚀".repeat(256)), "256 characters, 512 UTF-16 units");
    }
}
