package dev.morastream.ops.run;

import static dev.morastream.ops.run.MoraJobTest.await;
import static dev.morastream.ops.run.RunProcessTest.read;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.streams.kafka.EmbeddedKafka;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Three {@code mora run} processes on loopback against one external broker, no shared directory:
 * A and B with the trainer and serving roles, C serving only; two domains. A starts alone and holds
 * the leases of both domains; when B joins, Cluster Sharding moves one domain to B (A hands it over
 * with a final checkpoint), so each trainer node trains one domain. Both are promoted, each by the
 * node that trains it, and C answers both with the promoted versions. Then {@code kill -9} of A while
 * records of both domains are still produced: the split-brain resolver downs A, A's domain moves to
 * B, B restores its checkpoint from the state store and trains on; in the end every record of both
 * domains is in B's ledgers exactly once, and a client loop against C had no failed request all along.
 */
class ClusterFailoverTest {
    static final List<String> DOMAINS = List.of("alpha", "beta");

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

    @Test
    void domainsSpreadOverTheTrainerNodesAndAKilledNodesDomainMovesWithNothingLostOrTrainedTwice() throws Exception {
        kafka = EmbeddedKafka.start(tmp.resolve("kafka"));
        kafka.createTopic("facts-in", 2);
        Path config = tmp.resolve("cluster.conf");
        Files.writeString(config, String.join("\n", "morastream.kafka.topics = [facts-in]", "morastream.stream.domains = [alpha, beta]", "morastream.stream.default-domain = \"\"",
                "morastream.stream.idle-flush = 1s", "morastream.trainer.lr = 3e-3", "morastream.trainer.checkpoint-every-steps = 5",
                "morastream.trainer.checkpoint-every = 2s", "morastream.evaluator.tasks-per-set = 1", "morastream.evaluator.heldout-chars = 300",
                "morastream.promotion.memorization-margin = 0.2", "morastream.promotion.downstream-tolerance = 1.0",
                "morastream.promotion.max-kl = 0", "morastream.promotion.retention-tolerance = 10.0",
                // a killed consumer's partitions move after 10 s, not Kafka's default 45 s
                "morastream.kafka.client.\"session.timeout.ms\" = 10000",
                // and the resolver downs an unreachable node after 7 s of stability, not 20 s
                "pekko.cluster.split-brain-resolver.stable-after = 7s", ""));
        int pa = ClusterProcessTest.freePort();
        int pb = ClusterProcessTest.freePort();
        String seeds = "127.0.0.1:" + pa + ",127.0.0.1:" + pb;
        RunProcessTest.Run a = RunProcessTest.start(tmp, processes, kafka, config, "a", tmp.resolve("a"),
                "--cluster-port", String.valueOf(pa), "--seed-nodes", seeds);
        for (String d : DOMAINS) {
            await("A alone holds the lease of " + d, Duration.ofSeconds(60),
                    () -> read(a.out()).contains("training: this node holds the lease of " + d));
        }
        RunProcessTest.Run b = RunProcessTest.start(tmp, processes, kafka, config, "b", tmp.resolve("b"),
                "--cluster-port", String.valueOf(pb), "--seed-nodes", seeds);
        RunProcessTest.Run c = RunProcessTest.start(tmp, processes, kafka, config, "c", tmp.resolve("c"),
                "--cluster-port", String.valueOf(ClusterProcessTest.freePort()), "--seed-nodes", seeds, "--roles", "serving");
        // the joining trainer node takes one domain over: A hands it over first
        String[] moved = {null};
        await("B takes a domain over", Duration.ofSeconds(90), () -> {
            for (String d : DOMAINS) {
                if (read(b.out()).contains("training: this node holds the lease of " + d)) {
                    moved[0] = d;
                }
            }
            return moved[0] != null;
        });
        String kept = DOMAINS.get(0).equals(moved[0]) ? DOMAINS.get(1) : DOMAINS.get(0);
        assertTrue(read(a.out()).contains("training: handing the lease of " + moved[0] + " over"), read(a.out()));
        assertFalse(read(b.out()).contains("training: this node holds the lease of " + kept), "one trainer per domain: " + read(b.out()));
        Map<String, RunProcessTest.Run> owner = Map.of(moved[0], b, kept, a);

        // a client of C all along
        ClientLoop client = new ClientLoop(c, "client-of-c");

        produce(0, 150);
        for (String d : DOMAINS) {
            Pattern promoted = Pattern.compile("PROMOTED (" + d + "@v\\d+)");
            RunProcessTest.Run o = owner.get(d);
            String[] v = {null};
            await((o == a ? "A" : "B") + " promotes " + d, Duration.ofMinutes(4), () -> {
                Matcher m = promoted.matcher(read(o.out()));
                v[0] = m.find() ? m.group(1) : null;
                return v[0] != null;
            });
            assertFalse(promoted.matcher(read(o == a ? b.out() : a.out())).find(), "only " + d + "'s trainer node decides it");
            // the promoted version, or one promoted after it
            await("C serves " + v[0] + " or later", Duration.ofSeconds(30), () -> {
                Set<String> all = new HashSet<>();
                Matcher m = promoted.matcher(read(o.out()));
                while (m.find()) {
                    all.add(m.group(1));
                }
                return all.contains(ClientLoop.servedBy(c, d));
            });
            client.add(d);
        }

        // records still arrive while A dies
        Thread producer = new Thread(() -> produce(150, 150), "producer");
        producer.start();
        a.process().destroyForcibly(); // kill -9
        producer.join();
        await("B holds the lease of " + kept, Duration.ofMinutes(2), () -> read(b.out()).contains("training: this node holds the lease of " + kept));
        await("B restored " + kept + "'s checkpoint", Duration.ofSeconds(60),
                () -> read(b.out()).contains("trainer " + kept + ": restored checkpoint step-"));
        for (String d : DOMAINS) {
            Path ledger = tmp.resolve("b").resolve("checkpoints").resolve(d);
            await("B trains every record of " + d, Duration.ofMinutes(4), () -> RunProcessTest.ledgerSize(ledger) >= 300);
            List<String> ids = TrainerActor.ledger(ledger);
            assertEquals(ids.size(), new HashSet<>(ids).size(), d + ": a record trained twice");
            assertEquals(IntStream.range(0, 300).mapToObj(i -> d + "-" + i).collect(Collectors.toSet()), new HashSet<>(ids),
                    d + ": every record produced, once");
        }
        // each of B's two streams passed over the other domain's records
        Matcher passed = Pattern.compile("mora_stream_passed_over_records_total\\{[^}]*reason=\"trained_elsewhere\"[^}]*} ([0-9.E]+)")
                .matcher(ClusterProcessTest.metrics(b));
        assertTrue(passed.find(), ClusterProcessTest.metrics(b));
        assertTrue(Double.parseDouble(passed.group(1)) >= 300, "records passed over on B: " + passed.group());
        client.close();
        assertEquals(List.of(), client.failures(), "requests to C that failed");
        assertTrue(client.ok() > 0);
        for (RunProcessTest.Run r : List.of(b, c)) {
            r.process().destroy();
            assertTrue(r.process().waitFor(120, java.util.concurrent.TimeUnit.SECONDS));
            assertEquals(0, r.process().exitValue(), read(r.out()));
        }
    }

    void produce(int from, int n) {
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(),
                ProducerConfig.ACKS_CONFIG, "all"), new StringSerializer(), new StringSerializer())) {
            for (int i = from; i < from + n; i++) {
                for (String d : DOMAINS) {
                    String[] f = RunProcessTest.FACTS[(i + (d.equals("beta") ? 1 : 0)) % RunProcessTest.FACTS.length];
                    p.send(new ProducerRecord<>("facts-in", RunProcessTest.JSON.createObjectNode().put("id", d + "-" + i).put("domain", d)
                            .put("prompt", f[0]).put("completion", f[1]).toString()));
                }
            }
            p.flush();
        }
    }
}
