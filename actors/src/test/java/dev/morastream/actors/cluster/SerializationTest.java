package dev.morastream.actors.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.morastream.actors.CborSerializable;
import dev.morastream.actors.guardian.JobGuardian;
import dev.morastream.actors.registry.AdapterVersion;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;
import java.util.stream.Stream;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializer;
import org.apache.pekko.serialization.Serializers;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every message that crosses nodes goes through the serializer a cluster node uses: each class
 * marked {@link CborSerializable} (found by scanning the compiled classes, so a new one without a
 * sample here fails) round-trips through Jackson CBOR to an equal value, and so do the replies.
 */
class SerializationTest {
    static ActorTestKit kit;
    static Serialization serialization;

    @BeforeAll
    static void start() {
        kit = ActorTestKit.create("morastream", new ClusterSettings("127.0.0.1", 1, List.of(), Set.of("trainer"))
                .pekkoConfig("morastream").withValue("pekko.remote.artery.canonical.port", ConfigValueFactory.fromAnyRef(0))
                .withValue("pekko.cluster.seed-nodes", ConfigValueFactory.fromIterable(List.of())).withFallback(ConfigFactory.load()));
        serialization = SerializationExtension.get(Adapter.toClassic(kit.system()));
    }

    @AfterAll
    static void stop() {
        kit.shutdownTestKit();
    }

    /** One value of each class that crosses nodes. */
    static Map<Class<?>, Function<TestProbe<StatusReply<AdapterVersion>>, Object>> samples() {
        return Map.of(
                AdapterVersion.class, p -> new AdapterVersion("med.v2_x-y", 41),
                DomainLeases.Keep.class, p -> new DomainLeases.Keep(),
                JobGuardian.MoveAlias.class, p -> new JobGuardian.MoveAlias(AdapterVersion.parse("finance@v3"), true,
                        "rollback via the HTTP admin API", p.getRef()));
    }

    @Test
    void everyCrossNodeMessageHasASample() throws Exception {
        Path classes = Path.of(CborSerializable.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Set<String> marked = new TreeSet<>();
        try (Stream<Path> files = Files.walk(classes)) {
            for (Path f : (Iterable<Path>) files.filter(f -> f.toString().endsWith(".class"))::iterator) {
                String name = classes.relativize(f).toString().replace('/', '.').replaceAll("\\.class$", "");
                Class<?> c = Class.forName(name, false, getClass().getClassLoader());
                if (CborSerializable.class.isAssignableFrom(c) && !c.isInterface()) {
                    marked.add(c.getName());
                }
            }
        }
        assertEquals(new TreeSet<>(samples().keySet().stream().map(Class::getName).toList()), marked,
                "a sample for every CborSerializable class (and none for a class that is not one)");
    }

    @Test
    void eachRoundTripsThroughJacksonCbor() {
        TestProbe<StatusReply<AdapterVersion>> probe = kit.createTestProbe();
        for (Function<TestProbe<StatusReply<AdapterVersion>>, Object> make : samples().values()) {
            Object msg = make.apply(probe);
            Serializer s = serialization.findSerializerFor(msg);
            assertTrue(s.getClass().getName().endsWith("JacksonCborSerializer"), msg.getClass() + " -> " + s.getClass());
            assertEquals(msg, roundTrip(msg));
        }
    }

    @Test
    void theKeepAliveRoundTripsInItsShardingEnvelope() {
        var envelope = new org.apache.pekko.cluster.sharding.typed.ShardingEnvelope<DomainLeases.Command>("finance", new DomainLeases.Keep());
        var back = (org.apache.pekko.cluster.sharding.typed.ShardingEnvelope<?>) roundTrip(envelope);
        assertEquals("finance", back.entityId());
        assertEquals(new DomainLeases.Keep(), back.message());
    }

    @Test
    void repliesRoundTripToo() {
        StatusReply<AdapterVersion> ok = StatusReply.success(AdapterVersion.parse("finance@v3"));
        assertEquals(ok.getValue(), ((StatusReply<?>) roundTrip(ok)).getValue());
        StatusReply<AdapterVersion> err = StatusReply.error("no such adapter version finance@v9");
        assertEquals("no such adapter version finance@v9", ((StatusReply<?>) roundTrip(err)).getError().getMessage());
    }

    private static Object roundTrip(Object msg) {
        Serializer s = serialization.findSerializerFor(msg);
        byte[] bytes = serialization.serialize(msg).get(); // with the transport information ActorRefs need
        return serialization.deserialize(bytes, s.identifier(), Serializers.manifestFor(s, msg)).get();
    }
}
