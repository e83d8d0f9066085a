package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.Rejected;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The stream's and the dead-letter writer's client properties reach Kafka unchanged: against a
 * broker listener that demands SASL/PLAIN, the right credentials read, train, dead-letter and
 * commit; a wrong password fails fast with an authentication error.
 */
class SaslTest extends SecuredClusterTestBase {
    private static final String LISTENER = "SASL_PLAINTEXT";
    private static final String USER = "trainer";
    private static final String PASSWORD = "trainer-secret";

    private static EmbeddedKafka kafka;

    @BeforeAll
    static void startBroker() throws Exception {
        Files.createDirectories(Path.of("target"));
        kafka = EmbeddedKafka.start(Files.createTempDirectory(Path.of("target"), "kafka-sasl-test-"), Map.of(
                "sasl.enabled.mechanisms", "PLAIN",
                // the broker's side of PLAIN: the users it accepts on this listener
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required user_" + USER + "=\"" + PASSWORD + "\";"),
                Set.of(LISTENER));
        kit = ActorTestKit.create();
    }

    @AfterAll
    static void stopBroker() {
        kit.shutdownTestKit();
        kafka.close();
    }


    private static Map<String, String> sasl(String password) {
        return Map.of(
                CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, LISTENER,
                SaslConfigs.SASL_MECHANISM, "PLAIN",
                SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
                        + USER + "\" password=\"" + password + "\";");
    }

    @Override
    EmbeddedKafka kafka() {
        return kafka;
    }

    @Override
    String listener() {
        return LISTENER;
    }

    @Test
    void withTheRightPasswordRecordsAreTrainedBadOnesDeadLetteredAndOffsetsCommitted() throws Exception {
        mixedTopicIsTrainedDeadLetteredAndCommitted("sasl-texts", 200, sasl(PASSWORD));
    }

    @Test
    void aWrongPasswordFailsTheStreamWithAnAuthenticationError() throws Exception {
        String topic = "sasl-denied";
        kafka.createTopic(topic, 1);
        kafka.createTopic(topic + "-dlq", 1);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, settings(topic, sasl("wrong")),
                new ByteTokenizer(), deadLetters(topic + "-dlq", sasl(PASSWORD)), new RecordingSink(1), Map.of());
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(control.streamCompletion(), WAIT));
        assertTrue(causes(failed).stream().anyMatch(t -> t instanceof SaslAuthenticationException),
                "not an authentication error: " + causes(failed));
        await(control.shutdown(), WAIT);
    }

    @Test
    void aWrongPasswordFailsADeadLetterWithAnAuthenticationError() throws Exception {
        String dlq = "sasl-denied-dlq";
        kafka.createTopic(dlq, 1);
        DeadLetters deadLetters = deadLetters(dlq, sasl("wrong"));
        ConsumerRecord<byte[], byte[]> source = new ConsumerRecord<>("somewhere", 0, 0L, null, new byte[] {7});
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(
                deadLetters.send(new Rejected(Rejected.Reason.EMPTY, "test", source)), WAIT));
        assertTrue(causes(failed).stream().anyMatch(t -> t instanceof SaslAuthenticationException),
                "not an authentication error: " + causes(failed));
        assertEquals(0, deadLetters.count());
    }

    private static List<Throwable> causes(Throwable t) {
        List<Throwable> all = new ArrayList<>();
        for (Throwable c = t; c != null && !all.contains(c); c = c.getCause()) {
            all.add(c);
        }
        return all;
    }
}
