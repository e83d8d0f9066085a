package dev.morastream.ops.run;

import static dev.morastream.ops.run.MoraJobTest.await;
import static dev.morastream.ops.run.RunProcessTest.read;
import static dev.morastream.ops.run.RunProcessTest.status;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.streams.kafka.EmbeddedKafka;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two {@code mora run} processes form a Pekko Cluster on loopback against one external broker, each
 * with its own data directory: node A (trainer + serving) starts the cluster, node B (serving only)
 * joins it through A as seed node. Each sees the other up (console, {@code mora_cluster_members});
 * only A trains; B serves. When A promotes a version, B fetches it from the state store and serves
 * it within 5 s of the decision, with a client loop against B failing no request; an admin promote
 * sent to B reaches A's supervisor (a message across nodes, and its reply); a serving node C
 * that starts afterwards serves the promoted version at once. A leaves gracefully on SIGTERM; B sees
 * it removed and goes on serving. A trainer node A2 with an empty disk takes A's place: it restores
 * A's last checkpoint from the state store, and every record of the stream ends up trained exactly
 * once across A and A2 (the ledger).
 */
class ClusterProcessTest {
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

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    @Test
    void aTrainerNodeAndAServingNodeFormAClusterAndTheServingNodeOutlivesTheOther() throws Exception {
        kafka = EmbeddedKafka.start(tmp.resolve("kafka"));
        kafka.createTopic("facts-in", 2);
        Path config = tmp.resolve("cluster.conf");
        Files.writeString(config, String.join("\n", "morastream.kafka.topics = [facts-in]", "morastream.stream.domains = [facts]",
                "morastream.stream.default-domain = facts", "morastream.stream.idle-flush = 1s", "morastream.trainer.lr = 3e-3",
                "morastream.trainer.checkpoint-every-steps = 5", "morastream.trainer.checkpoint-every = 2s", "morastream.evaluator.tasks-per-set = 1",
                "morastream.evaluator.heldout-chars = 300", "morastream.promotion.memorization-margin = 0.2",
                "morastream.promotion.downstream-tolerance = 1.0", "morastream.promotion.max-kl = 0",
                "morastream.promotion.retention-tolerance = 10.0", "morastream.http.admin-token = cluster-admin", ""));
        int pa = freePort();
        int pb = freePort();
        String a = "pekko://morastream@127.0.0.1:" + pa;
        String b = "pekko://morastream@127.0.0.1:" + pb;

        RunProcessTest.Run nodeA = RunProcessTest.start(tmp, processes, kafka, config, "a", tmp.resolve("a"),
                "--cluster-port", String.valueOf(pa), "--roles", "trainer,serving");
        RunProcessTest.Run nodeB = RunProcessTest.start(tmp, processes, kafka, config, "b", tmp.resolve("b"),
                "--cluster-port", String.valueOf(pb), "--seed-nodes", "127.0.0.1:" + pa, "--roles", "serving");
        await("A sees B up", Duration.ofSeconds(60), () -> read(nodeA.out()).contains("cluster: " + b + " [serving] is up"));
        await("B sees A up", Duration.ofSeconds(60), () -> read(nodeB.out()).contains("cluster: " + a + " [serving, trainer] is up"));
        await("B counts two members up", Duration.ofSeconds(30), () -> metrics(nodeB).contains("mora_cluster_members{node=\"127.0.0.1:" + pb + "\",status=\"up\"} 2.0"));

        await("A holds the lease of facts", Duration.ofSeconds(60), () -> read(nodeA.out()).contains("training: this node holds the lease of facts"));
        assertTrue(read(nodeA.out()).contains("trainer facts:"), "A trains");
        assertFalse(read(nodeB.out()).contains("trainer facts:"), "B has no trainer role: " + read(nodeB.out()));
        assertFalse(read(nodeB.out()).contains("stream: reading"), "B reads no stream");
        assertEquals(200, status(nodeB, "/v1/models"), "B serves");

        // a client of B all along; A learns facts and promotes; B follows
        ClientLoop client = new ClientLoop(nodeB, "client-of-b");
        produce(kafka, 0, 300);
        java.util.regex.Pattern promoted = java.util.regex.Pattern.compile("PROMOTED (facts@v\\d+)");
        String[] version = {null};
        await("A promotes a version", Duration.ofMinutes(4), () -> {
            java.util.regex.Matcher m = promoted.matcher(read(nodeA.out()));
            if (m.find()) {
                version[0] = m.group(1);
            }
            return version[0] != null;
        });
        java.util.regex.Pattern followed = java.util.regex.Pattern.compile("following: now serving " + version[0]
                + " as model 'facts' \\(([0-9.]+) s after the decision\\)");
        await("B serves " + version[0], Duration.ofSeconds(30), () -> followed.matcher(read(nodeB.out())).find());
        java.util.regex.Matcher lag = followed.matcher(read(nodeB.out()));
        assertTrue(lag.find());
        System.out.println("ClusterProcessTest: B " + lag.group());
        assertTrue(Double.parseDouble(lag.group(1)) <= 5.0, "B followed within 5 s of the decision: " + lag.group());
        client.add("facts");
        await("B answers as " + version[0], Duration.ofSeconds(10), () -> servedBy(nodeB).equals(version[0]));

        // an admin promote sent to B (which trains nothing) reaches A's supervisor across the cluster
        var move = RunProcessTest.http.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(nodeB.base() + "/v1/adapters/facts/promote"))
                .header("Content-Type", "application/json").header("Authorization", "Bearer cluster-admin")
                .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{\"version\":\"" + version[0] + "\"}")).build(),
                java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(200, move.statusCode(), move.body());
        await("A's supervisor decided B's admin move", Duration.ofSeconds(30),
                () -> read(nodeA.out()).contains("facts -> " + version[0] + " (promote via the HTTP admin API"));

        // an admin promote via B of a version B never served: B fetches it from the state store first
        java.util.regex.Pattern published = java.util.regex.Pattern.compile("registry: published (facts@v\\d+)");
        String[] other = {null};
        await("A publishes another version", Duration.ofMinutes(2), () -> {
            java.util.regex.Matcher m = published.matcher(read(nodeA.out()));
            while (m.find()) {
                if (!m.group(1).equals(version[0]) && !read(nodeA.out()).contains("PROMOTED " + m.group(1))) {
                    other[0] = m.group(1);
                }
            }
            return other[0] != null;
        });
        var move2 = RunProcessTest.http.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(nodeB.base() + "/v1/adapters/facts/promote"))
                .header("Content-Type", "application/json").header("Authorization", "Bearer cluster-admin")
                .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{\"version\":\"" + other[0] + "\"}")).build(),
                java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(200, move2.statusCode(), move2.body());
        await("B serves " + other[0], Duration.ofSeconds(30), () -> servedBy(nodeB).equals(other[0]));
        version[0] = other[0];

        // a serving node that starts now serves the current alias at once
        int pc = freePort();
        RunProcessTest.Run nodeC = RunProcessTest.start(tmp, processes, kafka, config, "c", tmp.resolve("c"),
                "--cluster-port", String.valueOf(pc), "--seed-nodes", "127.0.0.1:" + pa, "--roles", "serving");
        await("C serves " + version[0], Duration.ofSeconds(15), () -> servedBy(nodeC).equals(version[0]));
        client.close();
        assertEquals(List.of(), client.failures(), "requests to B that failed");
        assertTrue(client.ok() > 0, "the client was served");
        nodeC.process().destroy();
        assertTrue(nodeC.process().waitFor(120, TimeUnit.SECONDS), "C did not stop");

        nodeA.process().destroy(); // SIGTERM: a graceful leave
        assertTrue(nodeA.process().waitFor(120, TimeUnit.SECONDS), "A did not stop");
        assertEquals(0, nodeA.process().exitValue(), read(nodeA.out()));
        await("B sees A removed", Duration.ofSeconds(60), () -> read(nodeB.out()).contains("cluster: " + a + " [serving, trainer] is removed"));
        await("B counts one member up", Duration.ofSeconds(30), () -> metrics(nodeB).contains("mora_cluster_members{node=\"127.0.0.1:" + pb + "\",status=\"up\"} 1.0"));
        assertTrue(nodeB.process().isAlive(), "B goes on");
        assertEquals(200, status(nodeB, "/v1/models"), "B still serves");

        // the trainer moves to a node with an empty disk: it resumes from the checkpoint A exported when it
        // left, and in the end every record produced is in the ledger once, across both nodes' training
        List<String> trainedByA = dev.morastream.actors.trainer.TrainerActor.ledger(tmp.resolve("a").resolve("checkpoints").resolve("facts"));
        produce(kafka, 300, 100);
        RunProcessTest.Run nodeA2 = RunProcessTest.start(tmp, processes, kafka, config, "a2", tmp.resolve("a2"),
                "--cluster-port", String.valueOf(freePort()), "--seed-nodes", "127.0.0.1:" + pb, "--roles", "trainer,serving");
        await("A2 holds the lease of facts and restored A's checkpoint", Duration.ofSeconds(60),
                () -> read(nodeA2.out()).contains("trainer facts: restored checkpoint step-"));
        Path ledger2 = tmp.resolve("a2").resolve("checkpoints").resolve("facts");
        await("the moved trainer trains the rest", Duration.ofMinutes(3), () -> RunProcessTest.ledgerSize(ledger2) >= 400);
        List<String> all = dev.morastream.actors.trainer.TrainerActor.ledger(ledger2);
        assertEquals(all.size(), new java.util.HashSet<>(all).size(), "a record trained twice");
        assertEquals(java.util.stream.IntStream.range(0, 400).mapToObj(i -> "r-" + i).collect(java.util.stream.Collectors.toSet()),
                new java.util.HashSet<>(all), "every record produced, once");
        assertEquals(trainedByA, all.subList(0, trainedByA.size()), "A's lineage goes on where A left it");
        nodeA2.process().destroy();
        assertTrue(nodeA2.process().waitFor(120, TimeUnit.SECONDS), "A2 did not stop");
        assertEquals(0, nodeA2.process().exitValue(), read(nodeA2.out()));

        nodeB.process().destroy();
        assertTrue(nodeB.process().waitFor(120, TimeUnit.SECONDS), "B did not stop");
        assertEquals(0, nodeB.process().exitValue(), read(nodeB.out()));
    }

    /** The version that answers model 'facts' on {@code r} ("" when none). */
    static String servedBy(RunProcessTest.Run r) {
        return ClientLoop.servedBy(r, "facts");
    }

    static void produce(EmbeddedKafka kafka, int from, int n) {
        try (var p = new org.apache.kafka.clients.producer.KafkaProducer<String, String>(java.util.Map.of(
                org.apache.kafka.clients.producer.ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(),
                org.apache.kafka.clients.producer.ProducerConfig.ACKS_CONFIG, "all"),
                new org.apache.kafka.common.serialization.StringSerializer(), new org.apache.kafka.common.serialization.StringSerializer())) {
            for (int i = from; i < from + n; i++) {
                String[] f = RunProcessTest.FACTS[i % RunProcessTest.FACTS.length];
                p.send(new org.apache.kafka.clients.producer.ProducerRecord<>("facts-in", RunProcessTest.JSON.createObjectNode()
                        .put("id", "r-" + i).put("prompt", f[0]).put("completion", f[1]).toString()));
            }
            p.flush();
        }
    }

    static String metrics(RunProcessTest.Run r) {
        try {
            return RunProcessTest.get(r, "/metrics").body();
        } catch (Exception e) {
            return "";
        }
    }
}
