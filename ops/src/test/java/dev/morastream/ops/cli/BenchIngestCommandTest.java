package dev.morastream.ops.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import org.junit.jupiter.api.Test;

/** {@code mora bench ingest --json}: one object with the issue's fields. */
class BenchIngestCommandTest {
    @Test
    void printsOneJsonObjectWithTheIssuesFields() throws Exception {
        String[] r = CliTest.run("bench", "ingest", "--records", "2000", "--record-bytes", "200", "--partitions", "2", "--json");
        assertEquals("0", r[0], r[2]);
        List<JsonNode> lines = CliTest.jsonLines(r[1]);
        assertEquals(1, lines.size(), r[1]);
        JsonNode j = lines.get(0);
        assertEquals(List.of("records", "record_bytes", "kafka_records_per_s", "ours_records_per_s", "ratio"),
                iterate(j.fieldNames()));
        assertEquals(2000, j.get("records").asLong());
        assertEquals(200, j.get("record_bytes").asInt());
        assertTrue(j.get("kafka_records_per_s").asDouble() > 0, r[1]);
        assertTrue(j.get("ours_records_per_s").asDouble() > 0, r[1]);
    }

    private static List<String> iterate(java.util.Iterator<String> it) {
        List<String> l = new java.util.ArrayList<>();
        it.forEachRemaining(l::add);
        return l;
    }
}
