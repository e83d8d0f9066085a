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
 * only A trains; B serves. A leaves gracefully on SIGTERM; B sees it removed and goes on serving.
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
                "morastream.stream.default-domain = facts", ""));
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
        await("B counts two members up", Duration.ofSeconds(30), () -> metrics(nodeB).contains("mora_cluster_members{status=\"up\"} 2.0"));

        assertTrue(read(nodeA.out()).contains("trainer facts:"), "A trains");
        assertFalse(read(nodeB.out()).contains("trainer facts:"), "B has no trainer role: " + read(nodeB.out()));
        assertFalse(read(nodeB.out()).contains("stream: reading"), "B reads no stream");
        assertEquals(200, status(nodeB, "/v1/models"), "B serves");

        nodeA.process().destroy(); // SIGTERM: a graceful leave
        assertTrue(nodeA.process().waitFor(120, TimeUnit.SECONDS), "A did not stop");
        assertEquals(0, nodeA.process().exitValue(), read(nodeA.out()));
        await("B sees A removed", Duration.ofSeconds(60), () -> read(nodeB.out()).contains("cluster: " + a + " [serving, trainer] is removed"));
        await("B counts one member up", Duration.ofSeconds(30), () -> metrics(nodeB).contains("mora_cluster_members{status=\"up\"} 1.0"));
        assertTrue(nodeB.process().isAlive(), "B goes on");
        assertEquals(200, status(nodeB, "/v1/models"), "B still serves");

        nodeB.process().destroy();
        assertTrue(nodeB.process().waitFor(120, TimeUnit.SECONDS), "B did not stop");
        assertEquals(0, nodeB.process().exitValue(), read(nodeB.out()));
    }

    static String metrics(RunProcessTest.Run r) {
        try {
            return RunProcessTest.get(r, "/metrics").body();
        } catch (Exception e) {
            return "";
        }
    }
}
