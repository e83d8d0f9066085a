package dev.morastream.streams.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The ingestion benchmark end to end on a few thousand records (real broker, real child JVM). */
class IngestBenchTest {
    @Test
    void measuresKafkasToolAndOursOnTheSameTopic() throws Exception {
        Files.createDirectories(Path.of("target"));
        Path dir = Files.createTempDirectory(Path.of("target"), "ingest-bench-");
        IngestBench.Result r = IngestBench.run(dir, IngestBench.Options.of(3_000, 256, 2));
        org.slf4j.LoggerFactory.getLogger(IngestBenchTest.class).info("ingest bench: {}", r);
        assertEquals(3_000, r.records());
        assertEquals(256, r.recordBytes());
        assertTrue(r.kafkaRecordsPerS() > 0, r.toString());
        assertTrue(r.oursRecordsPerS() > 0, r.toString());
        assertEquals(r.oursRecordsPerS() / r.kafkaRecordsPerS(), r.ratio(), 1e-9);
    }

    @Test
    void valuesAreAcceptedJsonOfAboutTheSizeAsked() throws Exception {
        ObjectMapper json = new ObjectMapper();
        List<byte[]> values = IngestBench.values(512, 50, 3);
        for (byte[] v : values) {
            assertTrue(v.length > 400 && v.length <= 512, "size " + v.length);
            assertTrue(json.readTree(v).get("text").isTextual());
        }
    }

    @Test
    void parsesConsumerPerformanceOutput() {
        String out = """
                WARN some log line
                start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
                2026-11-28 12:00:00:000, 2026-11-28 12:00:01:000, 1.0, 1.0, 3000, 2999.5, 300, 700, 1.4, 4285.7
                """;
        assertEquals(2999.5, IngestBench.parseRate(out), 1e-9);
    }
}
