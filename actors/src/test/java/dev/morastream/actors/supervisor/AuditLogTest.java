package dev.morastream.actors.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AuditLogTest {
    @Test
    void oldLinesParseTornAndCorruptLinesAreSkippedAndTheNextAppendStartsANewLine(@TempDir Path tmp) throws Exception {
        Path f = tmp.resolve("audit.jsonl");
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        // lines as earlier versions wrote them (no codes; admin promotions audited as rolled_back)
        b.writeBytes("{\"time\":\"2026-01-01T00:00:00Z\",\"domain\":\"news\",\"decision\":\"promoted\",\"version\":\"news@v1\"}\n"
                .getBytes(StandardCharsets.UTF_8));
        b.writeBytes("{\"domain\":\"news\",\"decision\":\"superseded\",\"version\":\"news@v2\"}\n".getBytes(StandardCharsets.UTF_8));
        b.writeBytes(new byte[] {'{', '"', (byte) 0xC3, (byte) 0x28, '"', '}', '\n'}); // not UTF-8
        b.writeBytes("not json at all\n".getBytes(StandardCharsets.UTF_8));
        b.writeBytes("{\"domain\":\"news\",\"decision\":\"rolled_back\",\"version\":\"news@v1\"}\n".getBytes(StandardCharsets.UTF_8));
        b.writeBytes("{\"domain\":\"news\",\"decis".getBytes(StandardCharsets.UTF_8)); // torn: the process died mid-write
        Files.write(f, b.toByteArray());

        AuditLog.Tail t = AuditLog.tail(f, 200);
        assertEquals(3, t.records().size());
        assertEquals(3, t.skipped());
        assertEquals(List.of(PromotionDecision.PROMOTED, PromotionDecision.SUPERSEDED, PromotionDecision.ROLLED_BACK),
                t.records().stream().map(AuditLog::decision).toList());

        ObjectNode n = new ObjectMapper().createObjectNode();
        n.put("domain", "news");
        n.put("decision", PromotionDecision.PROMOTED_BY_ADMIN.id());
        n.put("version", "news@v2");
        AuditLog.append(f, n);
        AuditLog.Tail after = AuditLog.tail(f, 200);
        assertEquals(4, after.records().size(), "the torn line spoils nothing appended after it");
        assertEquals(PromotionDecision.PROMOTED_BY_ADMIN, AuditLog.decision(after.records().get(3)));
        assertEquals(2, AuditLog.tail(f, 2).records().size());
        assertEquals(0, AuditLog.tail(tmp.resolve("missing.jsonl"), 10).records().size());
    }
}
