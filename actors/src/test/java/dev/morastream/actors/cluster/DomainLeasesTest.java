package dev.morastream.actors.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The domains' leases on a real Pekko Cluster of two actor systems on loopback (in one JVM; the
 * process tests run them as separate JVMs): a trainer node alone holds every domain; a second
 * trainer node that joins takes one over after the first released it; a serving-only node holds
 * none; when the second leaves gracefully, its domain comes back. At no moment do two nodes hold
 * one domain.
 */
class DomainLeasesTest {
    static final List<String> DOMAINS = List.of("alpha", "beta");

    final List<ActorSystem<?>> systems = new ArrayList<>();
    /** domain -> the node holding it now; an acquire while another holds it is recorded as a violation. */
    final Map<String, String> holders = new ConcurrentHashMap<>();
    final List<String> violations = new CopyOnWriteArrayList<>();
    final List<String> log = new CopyOnWriteArrayList<>();

    @AfterEach
    void stop() {
        for (ActorSystem<?> s : systems) {
            s.terminate();
            s.getWhenTerminated().toCompletableFuture().orTimeout(60, TimeUnit.SECONDS).join();
        }
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    ActorSystem<?> node(String name, int port, int seed, Set<String> roles) {
        Config c = new ClusterSettings("127.0.0.1", port, List.of("127.0.0.1:" + seed), roles).pekkoConfig("leases")
                .withFallback(ConfigFactory.parseString("pekko.cluster.sharding.rebalance-interval = 2s\n"
                        + "pekko.cluster.split-brain-resolver.stable-after = 5s\n"))
                .withFallback(ConfigFactory.load());
        ActorSystem<Void> s = ActorSystem.create(Behaviors.empty(), "leases", c);
        systems.add(s);
        DomainLeases.init(s, DOMAINS, new DomainLeases.Holder() {
            @Override
            public CompletionStage<Void> acquired(String domain) {
                return CompletableFuture.runAsync(() -> {
                    String before = holders.putIfAbsent(domain, name);
                    if (before != null) {
                        violations.add(name + " acquired " + domain + " while " + before + " held it");
                    }
                    log.add(name + " acquired " + domain);
                });
            }

            @Override
            public CompletionStage<Void> release(String domain) {
                return CompletableFuture.runAsync(() -> {
                    sleep(300); // a drain and a final checkpoint take a while: nobody may acquire meanwhile
                    log.add(name + " released " + domain);
                    holders.remove(domain, name);
                });
            }
        });
        return s;
    }

    @Test
    void domainsSpreadOverTrainerNodesMoveWhenOneJoinsAndComeBackWhenItLeaves() throws Exception {
        int pa = freePort();
        node("a", pa, pa, Set.of("trainer", "serving"));
        await("a holds both", () -> Map.of("alpha", "a", "beta", "a").equals(Map.copyOf(holders)));

        ActorSystem<?> c = node("c", freePort(), pa, Set.of("serving"));
        ActorSystem<?> b = node("b", freePort(), pa, Set.of("trainer", "serving"));
        await("b takes one domain over", () -> holders.containsValue("b") && holders.size() == 2);
        assertEquals(Set.of("a", "b"), Set.copyOf(holders.values()), "one domain each: " + log);
        String moved = holders.entrySet().stream().filter(e -> e.getValue().equals("b")).findFirst().orElseThrow().getKey();
        assertTrue(log.indexOf("a released " + moved) >= 0 && log.indexOf("a released " + moved) < log.indexOf("b acquired " + moved),
                "released on a before acquired on b: " + log);
        assertTrue(!holders.containsValue("c"), "a serving node holds nothing");

        // b leaves gracefully: its domain is handed back to a
        b.terminate();
        b.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
        systems.remove(b);
        await("a holds both again", () -> Map.of("alpha", "a", "beta", "a").equals(Map.copyOf(holders)));
        assertTrue(log.contains("b released " + moved), "b released " + moved + " before it left: " + log);
        assertEquals(List.of(), violations, "two holders of one domain");
        assertTrue(!c.getWhenTerminated().toCompletableFuture().isDone(), "the serving node goes on");
    }

    static void await(String what, BooleanSupplier ok) throws InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!ok.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out: " + what);
            }
            Thread.sleep(100);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
