package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.models.train.TrainerCheckpoint;
import io.micrometer.core.instrument.Counter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The real job on a data directory damaged in every way a crash or a disk can damage it: it starts,
 * serves ({@code /v1/models}, {@code /v1/adapters} and completions answer 200), reports what it
 * skipped (log, {@code mora_state_repairs_total}), and trains on from the previous sound
 * checkpoint's offsets, every record exactly once.
 */
class DamagedStateJobTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @TempDir
    Path dir;

    static Map<String, Object> settings(Path data) {
        Map<String, Object> o = MoraJobTest.settings(data);
        o.put("morastream.trainer.checkpoint-every-steps", 1);
        o.put("morastream.trainer.checkpoint-every", "1s");
        o.put("morastream.evaluator.tasks-per-set", 1);
        o.put("morastream.evaluator.heldout-chars", 300);
        o.put("morastream.stream.restart-backoff", "500ms");
        return o;
    }

    static void produce(MoraJob job, Set<String> ids, int from, int to) {
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, job.bootstrapServers()),
                new StringSerializer(), new StringSerializer())) {
            for (int i = from; i < to; i++) {
                String id = "r-" + i;
                p.send(new ProducerRecord<>(MoraJobTest.TOPIC, "{\"id\": \"" + id + "\", \"text\": \"Record " + i
                        + " says that the capital of Zorbland is Quixotta.\"}"));
                ids.add(id);
            }
        }
    }

    static List<Path> list(Path d, String regex) throws Exception {
        if (!Files.isDirectory(d)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(d)) {
            return s.filter(p -> p.getFileName().toString().matches(regex)).sorted(Comparator.comparing(Path::toString)).toList();
        }
    }

    static long number(Path versionDir) {
        return Long.parseLong(versionDir.getFileName().toString().substring(1));
    }

    static HttpResponse<String> get(MoraJob job, String path) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + job.port() + path)).timeout(Duration.ofSeconds(30)).GET()
                .build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }

    static HttpResponse<String> post(MoraJob job, String path, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + job.port() + path)).timeout(Duration.ofSeconds(60))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }

    @Test
    void aJobOnADamagedDataDirectoryStartsServesReportsWhatItSkippedAndTrainsOnFromThePreviousCheckpoint() throws Exception {
        Path data = dir.resolve("data");
        Path root = Path.of("..").toAbsolutePath().normalize();
        Path ckpt = data.resolve("checkpoints").resolve(MoraJobTest.DOMAIN);
        Path reg = data.resolve("registry");
        Path facts = reg.resolve(MoraJobTest.DOMAIN);
        Set<String> produced = new HashSet<>();

        // ---- a healthy run leaves checkpoints, versions, an audit log and a ledger ----
        try (MoraJob job = MoraJob.start(JobConfig.load(null, settings(data), root))) {
            produce(job, produced, 0, 30);
            MoraJobTest.await("the first records trained", Duration.ofMinutes(2), () -> MoraJobTest.ledger(ckpt).size() >= 30);
            produce(job, produced, 30, 60);
            MoraJobTest.await("every record in a checkpoint, 3 versions", Duration.ofMinutes(2), () -> {
                try {
                    return MoraJobTest.ledger(ckpt).size() >= 60 && list(facts, "v[0-9]+").size() >= 3
                            && Files.exists(data.resolve("audit.jsonl"));
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
        }
        List<Path> steps = list(ckpt, "step-[0-9]+");
        assertTrue(steps.size() >= 2, "kept checkpoints: " + steps);
        Path latest = steps.get(steps.size() - 1);
        Path previous = steps.get(steps.size() - 2);
        List<String> ledgerBefore = TrainerActor.ledger(ckpt);
        List<Path> versions = list(facts, "v[0-9]+");
        long newest = versions.stream().mapToLong(DamagedStateJobTest::number).max().orElseThrow();

        // ---- the damage ----
        // the latest checkpoint: a torn optimizer file
        Path opt = latest.resolve("optimizer.safetensors");
        Files.write(opt, java.util.Arrays.copyOf(Files.readAllBytes(opt), 64));
        // versions: a torn tensor file, and a folder without version.json (a crash in the middle of pruning)
        Path torn = versions.get(0);
        Path noMeta = versions.get(1);
        Files.write(torn.resolve("adapter_model.safetensors"), new byte[] {9, 9, 9});
        Files.delete(noMeta.resolve("version.json"));
        // the alias names a version that does not exist
        Files.writeString(facts.resolve("alias.json"), "{\"version\": \"" + MoraJobTest.DOMAIN + "@v999\"}");
        // another domain of the registry (served, not trained here) whose alias.json is corrupt
        Path other = reg.resolve("other");
        Files.createDirectories(other);
        copyTree(versions.get(versions.size() - 1), other.resolve("v1"));
        Files.write(other.resolve("alias.json"), new byte[] {'{', '"', 'v', (byte) 0xff});
        // stray folders
        Files.createDirectories(reg.resolve("lost+found"));
        Files.createDirectories(facts.resolve("lost+found"));
        // a torn last line in the audit log
        Files.writeString(data.resolve("audit.jsonl"), "{\"time\": \"2026-01-01T00:00:00Z\", \"domain\": \"facts\", \"deci",
                StandardOpenOption.APPEND);
        // a corrupt ledger line (same length: the checkpoint's ledger length still holds)
        byte[] ledger = Files.readAllBytes(ckpt.resolve("ledger.txt"));
        String lost = ledgerBefore.get(0);
        for (int i = 0; i < lost.length(); i++) {
            ledger[i] = (byte) 0xff;
        }
        Files.write(ckpt.resolve("ledger.txt"), ledger);

        // ---- the job starts on it ----
        try (MoraJob job = MoraJob.start(JobConfig.load(null, settings(data), root))) {
            job.warm().get(60, java.util.concurrent.TimeUnit.SECONDS);
            HttpResponse<String> models = get(job, "/v1/models");
            assertEquals(200, models.statusCode(), models.body());
            List<String> ids = new ArrayList<>();
            JSON.readTree(models.body()).path("data").forEach(m -> ids.add(m.path("id").asText()));
            assertTrue(ids.contains(MoraJobTest.DOMAIN + "@v" + newest), ids.toString());
            assertFalse(ids.contains(MoraJobTest.DOMAIN + "@v" + number(torn)), ids.toString());
            assertFalse(ids.contains(MoraJobTest.DOMAIN + "@v" + number(noMeta)), ids.toString());
            assertTrue(ids.contains("other"), ids.toString());
            assertFalse(ids.stream().anyMatch(i -> i.contains("lost")), ids.toString());

            HttpResponse<String> adapters = get(job, "/v1/adapters");
            assertEquals(200, adapters.statusCode(), adapters.body());
            JsonNode a = JSON.readTree(adapters.body());
            assertEquals(1, a.path("audit_lines_skipped").asInt(), a.toString());
            assertTrue(a.path("audit").size() >= 1, a.toString());
            JsonNode factsNode = null;
            JsonNode otherNode = null;
            for (JsonNode d : a.path("domains")) {
                if (d.path("domain").asText().equals(MoraJobTest.DOMAIN)) {
                    factsNode = d;
                } else if (d.path("domain").asText().equals("other")) {
                    otherNode = d;
                }
            }
            assertEquals(MoraJobTest.DOMAIN + "@v" + newest, factsNode.path("alias").asText(), "the alias fell back to the newest valid");
            assertEquals("other@v1", otherNode.path("alias").asText(), "the corrupt alias fell back to the newest valid");

            // both aliases answer
            for (String model : List.of(MoraJobTest.DOMAIN, "other")) {
                HttpResponse<String> c = post(job, "/v1/completions", "{\"model\": \"" + model
                        + "\", \"prompt\": \"Q: hi\\nA:\", \"max_tokens\": 2, \"temperature\": 0}");
                assertEquals(200, c.statusCode(), c.body());
            }

            // what was skipped is reported
            assertTrue(Files.isDirectory(facts.resolve("quarantine").resolve(torn.getFileName().toString())));
            assertTrue(Files.isDirectory(facts.resolve("quarantine").resolve(noMeta.getFileName().toString())));
            assertTrue(Files.isDirectory(ckpt.resolve(TrainerCheckpoint.QUARANTINE).resolve(latest.getFileName().toString())));
            // it trains on from the previous checkpoint's offsets: the records after them are trained again, once
            produce(job, produced, 60, 80);
            Set<String> expected = new HashSet<>(produced);
            expected.remove(lost); // its ledger line was destroyed: skipped when read
            MoraJobTest.await("every record in a checkpoint after the restart", Duration.ofMinutes(3),
                    () -> MoraJobTest.ledger(ckpt).size() >= expected.size());
            List<String> trained = TrainerActor.ledger(ckpt);
            assertEquals(expected.size(), trained.size(), "records lost or trained twice: " + trained);
            assertEquals(expected, new HashSet<>(trained));
            assertTrue(list(ckpt, "step-[0-9]+").stream().anyMatch(p -> p.getFileName().compareTo(latest.getFileName()) > 0),
                    "new checkpoints are written");
            double quarantined = job.metrics().registry().find("mora.state.repairs").tag("action", "quarantined").counters().stream()
                    .mapToDouble(Counter::count).sum();
            double fallbacks = job.metrics().registry().find("mora.state.repairs").tags("action", "alias_fallback").counters().stream()
                    .mapToDouble(Counter::count).sum();
            assertTrue(quarantined >= 3, "registry versions and the checkpoint: " + quarantined);
            assertTrue(fallbacks >= 2, "two aliases: " + fallbacks);
            assertTrue(get(job, "/metrics").body().contains("mora_state_repairs_total"));

        }
    }

    static void copyTree(Path from, Path to) throws Exception {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else {
                    Files.copy(p, t);
                }
            }
        }
    }
}
