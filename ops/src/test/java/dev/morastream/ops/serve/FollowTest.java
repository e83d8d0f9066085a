package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.registry.RegistryReplica;
import dev.morastream.ops.run.PromotionFollower;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.state.KafkaStateStore;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A serving process following a cluster ({@code mora serve --follow}): a version exported to the
 * Kafka state store by a trainer node's registry and then promoted on the promotions topic is
 * fetched into the server's own registry and served; a record that is no promotion is skipped, one
 * that contradicts the store's alias is not followed, and a promotion of a version the store does
 * not have leaves the served one in place.
 */
class FollowTest {
    @TempDir
    Path tmp;

    @Test
    void servesWhatTheClusterPromotesFetchedFromTheStateStore() throws Exception {
        try (EmbeddedKafka kafka = EmbeddedKafka.start(tmp.resolve("kafka"));
             ServeFixture trainerSide = new ServeFixture(tmp.resolve("trainer"), 2)) {
            kafka.createTopic("mora.promotions", 1, Map.of("cleanup.policy", "compact"));
            Map<String, Object> client = Map.of("bootstrap.servers", kafka.bootstrapServers());
            AdapterVersion v2 = trainerSide.versions.get(1);
            try (KafkaStateStore writer = KafkaStateStore.open(KafkaStateStore.Settings.of(client, "mora.state").withWriter("registry.facts"))) {
                RegistryReplica exports = new RegistryReplica(writer);
                exports.export(trainerSide.registry, trainerSide.registry.get(trainerSide.versions.get(0)).orElseThrow());
                exports.export(trainerSide.registry, trainerSide.registry.get(v2).orElseThrow());
                exports.alias(v2); // what the deciding node's registry writes before it publishes the promotion
            }
            List<String> said = new CopyOnWriteArrayList<>();
            try (Server server = Server.start(new Server.Config(ServeFixture.TINY, tmp.resolve("replica"), 5, "127.0.0.1", 0,
                         ServingPool.Options.defaults(), HttpApi.Settings.defaults()));
                 KafkaStateStore reader = KafkaStateStore.open(KafkaStateStore.Settings.of(client, "mora.state"));
                 PromotionFollower follower = new PromotionFollower(client, "mora.promotions", new RegistryReplica(reader),
                         server.pool().registry().orElseThrow(), server.pool(), d -> true, said::add, server.meters()).start();
                 KafkaProducer<String, String> promotions = new KafkaProducer<>(Map.of("bootstrap.servers", kafka.bootstrapServers(),
                         "acks", "all"), new StringSerializer(), new StringSerializer())) {
                assertEquals(Optional.empty(), server.pool().serving("facts"));
                promotions.send(new ProducerRecord<>("mora.promotions", "facts", "{not a promotion")).get();
                promotions.send(new ProducerRecord<>("mora.promotions", "facts", "{\"domain\":\"facts\",\"version\":\"" + v2
                        + "\",\"time\":\"" + Instant.now() + "\"}")).get();
                // the console line comes after the swap (the local alias, which the pool also reads, moves just before)
                await(() -> said.stream().anyMatch(l -> l.startsWith("following: now serving " + v2 + " as model 'facts'")), "the swap");
                assertEquals(Optional.of(v2), server.pool().serving("facts"));
                assertEquals(Optional.of(v2), server.pool().registry().orElseThrow().alias("facts"), "the local alias follows");

                // a record that contradicts the state store's alias (forged, or stale) is not followed
                promotions.send(new ProducerRecord<>("mora.promotions", "facts", "{\"domain\":\"facts\",\"version\":\""
                        + trainerSide.versions.get(0) + "\"}")).get();
                await(() -> server.meters().find("mora.follow.disagreements").counter() != null, "the disagreement noticed");
                assertEquals(Optional.of(v2), server.pool().serving("facts"), "the store's alias wins");

                // a version nobody exported: retried, and meanwhile the served one stays
                promotions.send(new ProducerRecord<>("mora.promotions", "facts", "{\"domain\":\"facts\",\"version\":\"facts@v9\"}")).get();
                Thread.sleep(1500); // several retries' worth
                assertEquals(Optional.of(v2), server.pool().serving("facts"));
                assertTrue(server.meters().find("mora.follow.skipped").counter().count() >= 1, "the bad record was counted");
            }
        }
    }

    static void await(java.util.function.BooleanSupplier ok, String what) throws InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (!ok.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(100);
        }
    }
}
