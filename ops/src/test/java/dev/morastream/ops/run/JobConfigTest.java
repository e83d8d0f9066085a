package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValue;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** application.conf: every key documented, the override order, clear errors. */
class JobConfigTest {
    static final Path HOME = Path.of("/opt/mora");

    @TempDir
    Path tmp;

    @Test
    void defaultsRunTheDemoOnTheShippedModelWithAnEmbeddedBroker() {
        JobConfig c = JobConfig.load(null, Map.of(), HOME);
        assertEquals(HOME.resolve("base-models/tiny"), c.baseModel());
        assertTrue(c.kafka().embedded());
        assertTrue(c.demo().enabled());
        assertEquals(8080, c.http().port());
        assertEquals("127.0.0.1", c.http().host());
        assertEquals(List.of("mora.demo.facts"), c.kafka().topics());
        assertEquals("demo", c.stream().decoder().defaultDomain());
        assertEquals(AdapterSpec.Method.MORA, c.trainer().spec().method());
        assertEquals(MoraVariant.ROTATION, c.trainer().spec().resolvedVariant()); // auto, r = 8 < 128
        assertEquals(Path.of("mora-data").toAbsolutePath().normalize(), c.dataDir());
        assertEquals(HOME.resolve("base-models/tiny/eval/tasks.jsonl"), c.evaluator().tasksFile());
        assertNull(c.http().adminToken().isEmpty() ? null : "a token by default");
    }

    @Test
    void theDefaultsAreTheMeasuredForgettingGuards() {
        JobConfig c = JobConfig.load(null, Map.of(), HOME);
        assertEquals(0.75, c.stream().replay().fraction());
        assertEquals(0.7, c.stream().replay().rehearsalShare());
        assertEquals(5.0, c.trainer().config().klWeight());
        assertEquals(new dev.morastream.actors.supervisor.PromotionPolicy(0.05, 0.03, 0.02, 0.15), c.promotion());
        assertEquals(0, c.evaluator().tasksPerSet());
        JobConfig off = JobConfig.load(null, Map.of("morastream.promotion.max-kl", 0), HOME);
        assertEquals(Double.POSITIVE_INFINITY, off.promotion().maxKl());
    }

    @Test
    void reMoRaInTheStreamingTrainerIsRefusedWithWhatToUseInstead() {
        for (Map<String, Object> o : List.<Map<String, Object>>of(Map.of("morastream.trainer.remora-every", 100),
                Map.of("morastream.stream.domain-settings.demo.remora-every", 100))) {
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> JobConfig.load(null, o, HOME));
            assertTrue(e.getMessage().contains("not supported by the streaming trainer") && e.getMessage().contains("bin/mora train"),
                    e.getMessage());
        }
    }

    @Test
    void everyKeyOfApplicationConfIsCommented() {
        Config app = ConfigFactory.parseResources("application.conf").getConfig("morastream");
        List<String> bare = new ArrayList<>();
        for (Map.Entry<String, ConfigValue> e : app.entrySet()) {
            if (e.getValue().origin().comments().isEmpty()) {
                bare.add(e.getKey());
            }
        }
        assertTrue(bare.isEmpty(), "keys without a comment in application.conf: " + bare);
        assertTrue(app.entrySet().size() > 60, "keys: " + app.entrySet().size());
    }

    @Test
    void optionsBeatSystemPropertiesWhichBeatTheFileWhichBeatsTheDefaults() throws Exception {
        Path f = tmp.resolve("my.conf");
        Files.writeString(f, "morastream { http.port = 9001, trainer.rank = 16, demo.rate = 5, kafka.client { \"security.protocol\" = SASL_SSL } }\n");
        System.setProperty("morastream.trainer.rank", "32");
        ConfigFactory.invalidateCaches();
        try {
            JobConfig c = JobConfig.load(f, Map.of("morastream.http.port", 9002), HOME);
            assertEquals(9002, c.http().port()); // option over file
            assertEquals(32, c.trainer().spec().r()); // system property over file
            assertEquals(5.0, c.demo().rate()); // file over default
            assertEquals(Map.of("security.protocol", "SASL_SSL"), c.kafka().client()); // passed through to the clients
            assertEquals(Duration.ofSeconds(60), c.trainer().checkpointEvery()); // default
        } finally {
            System.clearProperty("morastream.trainer.rank");
            ConfigFactory.invalidateCaches();
        }
    }

    @Test
    void aDomainOverridesTrainerAndPromotionKeysAndOthersKeepTheDefaults() {
        JobConfig c = JobConfig.load(null, Map.of("morastream.stream.domains", List.of("medicine", "finance"), "morastream.stream.default-domain", "",
                "morastream.stream.domain-settings.medicine.rank", 64,
                "morastream.stream.domain-settings.medicine.lr", 3e-4,
                "morastream.stream.domain-settings.medicine.promotion.memorization-margin", 0.2,
                "morastream.stream.domain-settings.finance.method", "lora"), HOME);
        assertEquals(64, c.trainer("medicine").spec().r());
        assertEquals(MoraVariant.ROTATION, c.trainer("medicine").spec().resolvedVariant()); // auto, 64 < 128
        assertEquals(3e-4, c.trainer("medicine").config().lr());
        assertEquals(0.2, c.promotion("medicine").memorizationMargin());
        assertEquals(c.promotion().downstreamTolerance(), c.promotion("medicine").downstreamTolerance());
        assertEquals(AdapterSpec.Method.LORA, c.trainer("finance").spec().method());
        assertEquals(8, c.trainer("finance").spec().r());
        assertEquals(c.trainer().config().lr(), c.trainer("finance").config().lr());
        assertEquals(c.promotion(), c.promotion("finance"));
    }

    @Test
    void aBadDomainOverrideFailsNamingTheKey() {
        IllegalArgumentException typo = assertThrows(IllegalArgumentException.class, () -> JobConfig.load(null,
                Map.of("morastream.stream.domains", List.of("medicine"), "morastream.stream.default-domain", "", "morastream.stream.domain-settings.medicine.rnak", 64), HOME));
        assertTrue(typo.getMessage().contains("morastream.stream.domain-settings.medicine.rnak"), typo.getMessage());
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class, () -> JobConfig.load(null,
                Map.of("morastream.stream.domains", List.of("medicine"), "morastream.stream.default-domain", "", "morastream.stream.domain-settings.law.rank", 64), HOME));
        assertTrue(unknown.getMessage().contains("domain-settings.law") && unknown.getMessage().contains("medicine"), unknown.getMessage());
        IllegalArgumentException value = assertThrows(IllegalArgumentException.class, () -> JobConfig.load(null,
                Map.of("morastream.stream.domains", List.of("medicine"), "morastream.stream.default-domain", "", "morastream.stream.domain-settings.medicine.method", "qlora"), HOME));
        assertTrue(value.getMessage().contains("morastream.stream.domain-settings.medicine.method"), value.getMessage());
        IllegalArgumentException gate = assertThrows(IllegalArgumentException.class, () -> JobConfig.load(null,
                Map.of("morastream.stream.domains", List.of("medicine"), "morastream.stream.default-domain", "", "morastream.stream.domain-settings.medicine.promotion.margin", 1), HOME));
        assertTrue(gate.getMessage().contains("domain-settings.medicine.promotion.margin"), gate.getMessage());
    }

    @Test
    void badValuesNameTheirKey() {
        IllegalArgumentException port = assertThrows(IllegalArgumentException.class,
                () -> JobConfig.load(null, Map.of("morastream.http.port", 70000), HOME));
        assertTrue(port.getMessage().contains("morastream.http.port"), port.getMessage());
        IllegalArgumentException method = assertThrows(IllegalArgumentException.class,
                () -> JobConfig.load(null, Map.of("morastream.trainer.method", "dora"), HOME));
        assertTrue(method.getMessage().contains("trainer.method"), method.getMessage());
        IllegalArgumentException type = assertThrows(IllegalArgumentException.class,
                () -> JobConfig.load(null, Map.of("morastream.stream.seq-len", "long"), HOME));
        assertTrue(type.getMessage().contains("seq-len"), type.getMessage());
        IllegalArgumentException domain = assertThrows(IllegalArgumentException.class,
                () -> JobConfig.load(null, Map.of("morastream.stream.default-domain", "other"), HOME));
        assertTrue(domain.getMessage().contains("other"), domain.getMessage());
        IllegalArgumentException file = assertThrows(IllegalArgumentException.class,
                () -> JobConfig.load(tmp.resolve("missing.conf"), Map.of(), HOME));
        assertTrue(file.getMessage().contains("missing.conf"), file.getMessage());
        assertFalse(JobConfig.load(null, Map.of("morastream.stream.idle-flush", "0s"), HOME).stream().idleFlush() != null);
    }

    @Test
    void anUnknownKeyFailsAtStartNamingTheNearestKnownOne() throws Exception {
        IllegalArgumentException typo = assertThrows(IllegalArgumentException.class,
                () -> JobConfig.load(null, Map.of("morastream.http.max-tokenz", 99), HOME));
        assertTrue(typo.getMessage().contains("unknown key 'morastream.http.max-tokenz'"), typo.getMessage());
        assertTrue(typo.getMessage().contains("did you mean 'morastream.http.max-tokens'"), typo.getMessage());
        Path f = tmp.resolve("typo.conf");
        Files.writeString(f, "morastream { trainer { lerning-rate = 0.01 } }\n");
        IllegalArgumentException inFile = assertThrows(IllegalArgumentException.class, () -> JobConfig.load(f, Map.of(), HOME));
        assertTrue(inFile.getMessage().contains("morastream.trainer.lerning-rate"), inFile.getMessage());
        assertTrue(inFile.getMessage().contains("typo.conf"), inFile.getMessage()); // where it was written
        // free-form sections stay free: Kafka client properties, dispatcher settings
        JobConfig ok = JobConfig.load(null, Map.of("morastream.kafka.client.\"sasl.mechanism\"", "PLAIN",
                "morastream.serving.dispatcher.thread-pool-executor.fixed-pool-size", 4), HOME);
        assertEquals("PLAIN", ok.kafka().client().get("sasl.mechanism"));
        assertEquals(4, ok.http().maxN()); // and the new http keys have their documented defaults
        assertEquals(Duration.ofSeconds(300), ok.http().requestTimeout());
        assertTrue(ok.http().allowedHosts().isEmpty());
    }
}
