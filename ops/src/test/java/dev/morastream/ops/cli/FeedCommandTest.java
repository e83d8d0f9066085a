package dev.morastream.ops.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.streams.kafka.EmbeddedKafka;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code mora feed} against the real embedded broker. */
class FeedCommandTest {
    @Test
    void feedsEveryNonEmptyLineWithTheDomain(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("facts.jsonl");
        Files.writeString(file, "{\"text\": \"one\"}\n\n{\"prompt\": \"Q: two?\\nA:\", \"completion\": \" 2\"}\n{\"text\": \"three\"}\n");
        try (EmbeddedKafka kafka = EmbeddedKafka.start(dir.resolve("kafka"))) {
            kafka.createTopic("facts", 2);
            String[] r = CliTest.run("feed", "--bootstrap-servers", kafka.bootstrapServers(), "--topic", "facts",
                    "--format", "jsonl", "--domain", "medicine", file.toString());
            assertEquals("0", r[0], r[2]);
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
            p.put(ConsumerConfig.GROUP_ID_CONFIG, "check");
            p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            List<String> values = new ArrayList<>();
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                c.subscribe(List.of("facts"));
                long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                while (values.size() < 3 && System.nanoTime() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> rec : c.poll(Duration.ofMillis(500))) {
                        values.add(new String(rec.value(), StandardCharsets.UTF_8));
                        assertEquals("medicine", new String(rec.key(), StandardCharsets.UTF_8));
                        assertEquals("medicine", new String(rec.headers().lastHeader("domain").value(), StandardCharsets.UTF_8));
                    }
                }
            }
            assertEquals(3, values.size(), "records: " + values);
            assertTrue(values.contains("{\"text\": \"three\"}"));
        }
        String[] missing = CliTest.run("feed", "--bootstrap-servers", "127.0.0.1:9", "--topic", "t", dir.resolve("nope.txt").toString());
        assertEquals("1", missing[0]);
        assertTrue(missing[2].contains("no such file"), missing[2]);
    }
}
