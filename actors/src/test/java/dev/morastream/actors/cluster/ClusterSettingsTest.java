package dev.morastream.actors.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** morastream.cluster: validation, the Pekko settings it makes, and the split-brain resolver and CBOR bindings shipped. */
class ClusterSettingsTest {
    @Test
    void offByDefaultChangesNothing() {
        ClusterSettings s = ClusterSettings.single();
        assertFalse(s.enabled());
        assertTrue(s.trains() && s.serves());
        assertTrue(s.pekkoConfig("morastream").isEmpty());
    }

    @Test
    void aPortMakesAClusterNodeThatSeedsItselfOrJoinsTheSeeds() {
        Config first = new ClusterSettings("10.0.0.5", 25520, List.of(), Set.of("trainer", "serving")).pekkoConfig("morastream");
        assertEquals("cluster", first.getString("pekko.actor.provider"));
        assertEquals("10.0.0.5", first.getString("pekko.remote.artery.canonical.hostname"));
        assertEquals(25520, first.getInt("pekko.remote.artery.canonical.port"));
        assertEquals(List.of("pekko://morastream@10.0.0.5:25520"), first.getStringList("pekko.cluster.seed-nodes"));
        Config second = new ClusterSettings("10.0.0.6", 25521, List.of("10.0.0.5:25520", "10.0.0.7:25520"), Set.of("serving"))
                .pekkoConfig("morastream");
        assertEquals(List.of("pekko://morastream@10.0.0.5:25520", "pekko://morastream@10.0.0.7:25520"),
                second.getStringList("pekko.cluster.seed-nodes"));
        assertEquals(List.of("serving"), second.getStringList("pekko.cluster.roles"));
    }

    @Test
    void badSettingsAreRefusedWithWhatIsWrong() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ClusterSettings("h", 1, List.of(), Set.of("trainr")))
                .getMessage().contains("unknown role 'trainr'"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ClusterSettings("h", 1, List.of(), Set.of()))
                .getMessage().contains("at least one role"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ClusterSettings("h", 1, List.of("nohost"), Set.of("serving")))
                .getMessage().contains("not HOST:PORT"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ClusterSettings("h", 70000, List.of(), Set.of("serving")))
                .getMessage().contains("not a port"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ClusterSettings("h", 0, List.of("a:1"), Set.of("serving")))
                .getMessage().contains("without a cluster port"));
    }

    @Test
    void theShippedConfigurationDownsTheMinorityAndSerializesCrossNodeMessagesAsCbor() {
        Config c = ConfigFactory.load();
        assertEquals("org.apache.pekko.cluster.sbr.SplitBrainResolverProvider", c.getString("pekko.cluster.downing-provider-class"));
        assertEquals("keep-majority", c.getString("pekko.cluster.split-brain-resolver.active-strategy"));
        assertEquals("jackson-cbor", c.getConfig("pekko.actor.serialization-bindings")
                .getString("\"dev.morastream.actors.CborSerializable\""));
    }
}
