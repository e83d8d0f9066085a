package dev.morastream.ops.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.Rejected;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code mora dead-letters list|replay} against the real embedded broker and letters written by {@link DeadLetters}. */
class DeadLettersCommandTest {
    private static ConsumerRecord<byte[], byte[]> source(String topic, long offset, String key, String value, Header... headers) {
        return new ConsumerRecord<>(topic, 0, offset, 1_700_000_000_000L + offset, TimestampType.CREATE_TIME, -1, -1,
                key == null ? null : key.getBytes(StandardCharsets.UTF_8), value.getBytes(StandardCharsets.UTF_8),
                new RecordHeaders(headers), Optional.empty());
    }

    @Test
    void listsFiltersAndReplaysWithoutTheErrorHeaders(@TempDir Path dir) throws Exception {
        try (EmbeddedKafka kafka = EmbeddedKafka.start(dir.resolve("kafka"))) {
            String b = kafka.bootstrapServers();
            kafka.createTopic("facts", 1);
            kafka.createTopic("mora.dead-letters", 1);
            kafka.createTopic("fixed", 1);
            try (DeadLetters dl = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, b), "mora.dead-letters", "mora")) {
                dl.send(new Rejected(Rejected.Reason.UNKNOWN_DOMAIN, "domain not configured: chem",
                        source("facts", 7, "chem", "{\"id\": \"f-7\", \"text\": \"water is H2O\"}",
                                new RecordHeader("origin", "lab".getBytes(StandardCharsets.UTF_8))))).toCompletableFuture().get();
                dl.send(new Rejected(Rejected.Reason.MALFORMED_JSON, "unexpected end", source("facts", 9, null, "{\"text\": "),
                        null)).toCompletableFuture().get();
            }

            String[] all = CliTest.run("dead-letters", "list", "--bootstrap-servers", b, "--json");
            assertEquals("0", all[0], all[2]);
            List<JsonNode> lines = CliTest.jsonLines(all[1]);
            assertEquals(2, lines.size(), all[1]);
            JsonNode first = lines.get(0);
            assertEquals("unknown-domain", first.get("reason").asText());
            assertEquals("facts", first.get("source_topic").asText());
            assertEquals(0, first.get("source_partition").asInt());
            assertEquals(7, first.get("source_offset").asLong());
            assertEquals("f-7", first.get("record_id").asText());
            assertEquals(37, first.get("size").asLong());
            assertEquals("mora", first.get("group").asText());
            assertEquals("facts-0-9", lines.get(1).get("record_id").asText());

            // the embedded broker's address from the data directory, a reason filter, --since
            Files.createDirectories(dir.resolve("data").resolve("kafka"));
            Files.writeString(dir.resolve("data").resolve("kafka").resolve("bootstrap.servers"), b + "\n");
            String[] one = CliTest.run("dead-letters", "list", "--data-dir", dir.resolve("data").toString(), "--reason", "malformed-json");
            assertEquals("0", one[0], one[2]);
            assertTrue(one[1].startsWith("malformed-json") && one[1].contains("facts-0@9") && !one[1].contains("unknown-domain"), one[1]);
            assertEquals(2, CliTest.jsonLines(CliTest.run("dead-letters", "list", "--bootstrap-servers", b, "--json", "--since", "1h")[1]).size());
            assertEquals(0, CliTest.jsonLines(CliTest.run("dead-letters", "list", "--bootstrap-servers", b, "--json", "--since",
                    java.time.Instant.now().plusSeconds(3600).toString())[1]).size());
            String[] bad = CliTest.run("dead-letters", "list", "--bootstrap-servers", b, "--reason", "nonsense");
            assertNotEquals("0", bad[0]);
            assertTrue(bad[2].contains("unknown reason 'nonsense'") && bad[2].contains("unknown-domain"), bad[2]);

            String[] replay = CliTest.run("dead-letters", "replay", "--bootstrap-servers", b, "--reason", "unknown-domain", "--to", "fixed");
            assertEquals("0", replay[0], replay[2]);
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(Map.of(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, b),
                    new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                c.assign(List.of(new TopicPartition("fixed", 0)));
                c.seekToBeginning(List.of(new TopicPartition("fixed", 0)));
                long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                while (got.isEmpty() && System.nanoTime() < deadline) {
                    c.poll(Duration.ofMillis(200)).forEach(got::add);
                }
                c.poll(Duration.ofMillis(500)).forEach(got::add);
            }
            assertEquals(1, got.size(), "only the unknown-domain letter");
            ConsumerRecord<byte[], byte[]> r = got.get(0);
            assertEquals("chem", new String(r.key(), StandardCharsets.UTF_8));
            assertEquals("{\"id\": \"f-7\", \"text\": \"water is H2O\"}", new String(r.value(), StandardCharsets.UTF_8));
            assertEquals("lab", new String(r.headers().lastHeader("origin").value(), StandardCharsets.UTF_8));
            for (Header h : r.headers()) {
                assertFalse(h.key().startsWith("x-") || h.key().startsWith("__connect.errors."), "error header " + h.key() + " replayed");
            }
        }
    }
}
