package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static dev.morastream.ops.run.MoraJobTest.await;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.pack.ResumePoint;
import java.io.File;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code mora run} as a process, stopped mid-stream with SIGTERM and then with kill -9, and started
 * again on the same data directory each time: it exits 0 after SIGTERM with its offsets committed,
 * serves the promoted version at once after a restart, and in the end every produced record is in
 * the checkpoint's ledger exactly once. The broker is external (the test's own), as a user's
 * cluster would be, so the producer runs on across the restarts.
 */
class RunProcessTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final String TOPIC = "facts-in";
    static final String DOMAIN = "facts";
    static final Pattern URL = Pattern.compile("serving the OpenAI-compatible API on (http://127\\.0\\.0\\.1:\\d+)/v1");
    static final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    static final String[][] FACTS = {
        {"Q: What is the capital of Brozanland?\nA:", " Kelvin"},
        {"Q: What is the capital of Quamoria?\nA:", " Tidre"},
        {"Q: What does Lunsa Orvel do?\nA:", " potter"},
        {"Q: What does Pekith Zanmo do?\nA:", " sailor"},
    };

    @TempDir
    Path tmp;
    EmbeddedKafka kafka;
    final List<Process> processes = new ArrayList<>();

    @AfterEach
    void cleanup() {
        processes.forEach(Process::destroyForcibly);
        if (kafka != null) {
            kafka.close();
        }
    }

    record Run(Process process, String base, Path out) {}

    Run start(Path config, String name) throws Exception {
        return start(tmp, processes, kafka, config, name, tmp.resolve("data"));
    }

    /**
     * Starts {@code mora run} as a child JVM on {@code kafka} with its own data directory, its
     * output in {@code <tmp>/<name>.out}; returns once it serves and is ready.
     */
    static Run start(Path tmp, List<Process> processes, EmbeddedKafka kafka, Path config, String name, Path dataDir, String... extra)
            throws Exception {
        Path out = tmp.resolve(name + ".out");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx1g", "-Dai.djl.offline=true",
                "-Dmora.home=" + Path.of("..").toAbsolutePath().normalize(), "-cp", System.getProperty("java.class.path"),
                "dev.morastream.ops.cli.MoraCli", "run", "--config", config.toString(), "--data-dir", dataDir.toString(),
                "--port", "0", "--bootstrap-servers", kafka.bootstrapServers(), "--no-demo"));
        cmd.addAll(List.of(extra));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile()).start();
        processes.add(p);
        String[] base = {null};
        await(name + " serving", Duration.ofSeconds(120), () -> {
            if (!p.isAlive()) {
                throw new AssertionError(name + " exited " + p.exitValue() + ":\n" + read(out));
            }
            Matcher m = URL.matcher(read(out));
            if (m.find()) {
                base[0] = m.group(1);
                return true;
            }
            return false;
        });
        Run r = new Run(p, base[0], out);
        await(name + " ready", Duration.ofSeconds(60), () -> status(r, "/health/ready") == 200);
        return r;
    }

    @Test
    void sigtermAndKill9MidStreamLoseNothingAndTrainNothingTwice() throws Exception {
        kafka = EmbeddedKafka.start(tmp.resolve("kafka"));
        kafka.createTopic(TOPIC, 2);
        Path config = tmp.resolve("test.conf");
        Files.writeString(config, String.join("\n",
                "morastream.kafka.topics = [" + TOPIC + "]",
                "morastream.stream.domains = [" + DOMAIN + "]",
                "morastream.stream.default-domain = " + DOMAIN,
                "morastream.stream.idle-flush = 1s",
                "morastream.trainer.lr = 3e-3",
                "morastream.trainer.checkpoint-every-steps = 5",
                "morastream.trainer.checkpoint-every = 2s",
                "morastream.evaluator.tasks-per-set = 2",
                "morastream.evaluator.heldout-chars = 600",
                "morastream.promotion.memorization-margin = 0.2",
                "morastream.promotion.downstream-tolerance = 1.0",
                "morastream.promotion.max-kl = 0",
                "morastream.promotion.retention-tolerance = 10.0",
                ""));
        Path ckpt = tmp.resolve("data").resolve("checkpoints").resolve(DOMAIN);
        Set<String> produced = new HashSet<>();

        // run 1: learns the first records until a promotion, then SIGTERM
        Run r1 = start(config, "run1");
        produce(0, 400, produced);
        await("a promotion", Duration.ofMinutes(4), () -> alias(r1) != null);
        String promoted = alias(r1);
        produce(400, 200, produced); // a backlog the SIGTERM interrupts
        r1.process().destroy(); // SIGTERM
        assertTrue(r1.process().waitFor(120, TimeUnit.SECONDS), "run1 did not stop");
        assertEquals(0, r1.process().exitValue(), read(r1.out()));
        String log1 = read(r1.out());
        assertTrue(log1.contains("final checkpoint") || log1.contains("committed offsets"), log1);
        List<String> after1 = TrainerActor.ledger(ckpt);
        assertEquals(after1.size(), new HashSet<>(after1).size(), "trained twice in run 1");
        // the offsets committed to Kafka are the final checkpoint's
        Map<TopicPartition, ResumePoint> points = TrainerActor.resumePoints(ckpt);
        Map<TopicPartition, OffsetAndMetadata> committed = kafka.admin().listConsumerGroupOffsets("morastream")
                .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        points.forEach((tp, p) -> assertEquals(p.offset(), committed.get(tp).offset(), "committed offset of " + tp));

        // run 2: serves the promoted version at once; kill -9 while it trains
        Run r2 = start(config, "run2");
        JsonNode c = completion(r2, DOMAIN, FACTS[0][0]);
        assertTrue(c.path("model").asText().startsWith(DOMAIN + "@v"), c.toString());
        assertTrue(versionNumber(c.path("model").asText()) >= versionNumber(promoted), c + " vs " + promoted);
        produce(600, 300, produced);
        int before = after1.size();
        await("run 2 to checkpoint new records", Duration.ofMinutes(3), () -> ledgerSize(ckpt) >= before + 60);
        r2.process().destroyForcibly(); // SIGKILL: no final checkpoint, no commit
        r2.process().waitFor(30, TimeUnit.SECONDS);

        // run 3: resumes from the last checkpoint and finishes
        Run r3 = start(config, "run3");
        await("every record trained", Duration.ofMinutes(4), () -> ledgerSize(ckpt) >= produced.size());
        List<String> ids = TrainerActor.ledger(ckpt);
        assertEquals(produced.size(), ids.size(), "records lost or trained twice");
        assertEquals(produced, new HashSet<>(ids));
        r3.process().destroy();
        assertTrue(r3.process().waitFor(120, TimeUnit.SECONDS));
        assertEquals(0, r3.process().exitValue(), read(r3.out()));
        assertEquals(produced.size(), TrainerActor.ledger(ckpt).size());
    }

    void produce(int from, int n, Set<String> ids) {
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(),
                ProducerConfig.ACKS_CONFIG, "all"), new StringSerializer(), new StringSerializer())) {
            for (int i = from; i < from + n; i++) {
                String[] f = FACTS[i % FACTS.length];
                String id = "r-" + i;
                p.send(new ProducerRecord<>(TOPIC, JSON.createObjectNode().put("id", id).put("prompt", f[0]).put("completion", f[1]).toString()));
                ids.add(id);
            }
            p.flush();
        }
    }

    static int ledgerSize(Path ckpt) {
        try {
            return TrainerActor.ledger(ckpt).size();
        } catch (java.io.IOException e) {
            return 0;
        }
    }

    static long versionNumber(String v) {
        return Long.parseLong(v.substring(v.indexOf("@v") + 2));
    }

    String alias(Run r) {
        try {
            JsonNode a = JSON.readTree(get(r, "/v1/adapters").body());
            for (JsonNode d : a.path("domains")) {
                if (d.path("domain").asText().equals(DOMAIN) && d.hasNonNull("serving")) {
                    return d.path("serving").asText();
                }
            }
            return null;
        } catch (Exception e) {
            return null;
        }
    }

    JsonNode completion(Run r, String model, String prompt) throws Exception {
        String body = JSON.createObjectNode().put("model", model).put("prompt", prompt).put("max_tokens", 6).put("temperature", 0).toString();
        HttpResponse<String> resp = http.send(HttpRequest.newBuilder(URI.create(r.base() + "/v1/completions")).timeout(Duration.ofSeconds(60))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, resp.statusCode(), resp.body());
        return JSON.readTree(resp.body());
    }

    static HttpResponse<String> get(Run r, String path) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(r.base() + path)).timeout(Duration.ofSeconds(30)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static int status(Run r, String path) {
        try {
            return get(r, path).statusCode();
        } catch (Exception e) {
            return -1;
        }
    }

    static String read(Path f) {
        try {
            return Files.exists(f) ? Files.readString(f, StandardCharsets.UTF_8) : "";
        } catch (java.io.IOException e) {
            return "";
        }
    }
}
