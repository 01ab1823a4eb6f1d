"""What the supporters' pages and the confirmation email say, in each language they speak.

Written for these pages, in plain words; formal address (vous, usted, Sie, 您) throughout.
"""

from __future__ import annotations

LANGS = ("en", "fr", "es", "de", "zh-Hans")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "lang_name": "English",
        "languages_nav": "Language of this page",
        "title_general": "Sign letters for people at risk",
        "title_action": "Sign the letters: {title}",
        "intro_general": (
            "Urgent actions ask officials to release, protect or give news of people at risk. With your "
            "permission, {org} sends these letters in your name, by email or fax. Below, you choose what "
            "you allow; you can withdraw at any time."
        ),
        "intro_action": (
            "With your permission, {org} sends the letters of this action in your name, by email or fax, "
            "to the officials it names. You can withdraw at any time."
        ),
        "legend_you": "About you",
        "name": "Your name",
        "name_help": "As it should appear under the letters.",
        "email": "Your email address",
        "email_help": (
            "We send you a link to confirm. The officials see this address only if you choose below "
            "that their replies come straight to you."
        ),
        "city": "City (optional)",
        "country": "Country (optional)",
        "country_none": "—",
        "language": "Your language",
        "language_help": "The language of our emails to you.",
        "legend_scope": "Which actions",
        "scope_all": "All urgent actions",
        "scope_tags": "Only the campaigns I tick:",
        "scope_action": "This action only.",
        "legend_how": "How your letters are sent",
        "channels": "Channels",
        "channel_email": "Email",
        "channel_fax": "Fax",
        "sign_languages": "Languages you sign in (optional)",
        "sign_languages_help": "Tick none to sign letters in whatever language they are written in.",
        "name_display": "How your name appears",
        "display_full": "Name, city and country",
        "display_name": "Name only",
        "cap": "At most this many letters a month (optional)",
        "cap_help": "A whole number from 1 to {max}; leave it empty for no limit.",
        "expiry": "This permission lasts",
        "expiry_none": "until I withdraw it",
        "expiry_months": "{n} months",
        "receipts": "Emails listing the letters sent in my name",
        "receipts_off": "No, thank you",
        "receipts_weekly": "Every week",
        "receipts_monthly": "Every month",
        "replies": "Where the officials' replies go",
        "replies_risk": (
            "The officials you write to are often the government the letters criticise. If their "
            "replies come straight to you, they learn your email address and may find out who you are. "
            "If that could put you or your family at risk, let the replies go to {org}."
        ),
        "replies_organisation": "To {org}: the letters do not carry my email address",
        "replies_direct": "Straight to me: letters sent by email carry my email address, for replies",
        "legend_words": "In your own words (optional)",
        "words_help": (
            "A few sentences added to your letters for this action, as plain text, up to {limit} "
            "characters. Any markup is removed."
        ),
        "legend_consent": "Your consent",
        "consent_text": (
            "I allow {org} to send letters in my name to the officials named in the actions I chose "
            "above, by the channels I chose. {org} writes the letters; they carry my name and, if I "
            "chose so, my city, my country and my own words. The officials get my email address only "
            "if I chose above that their replies come straight to me. I can withdraw this permission "
            "at any time, in one click; letters "
            "not yet sent are then cancelled. My details are used only to send these letters and to "
            "write to me about them."
        ),
        "consent_version": "Version {version} of this text.",
        "agree": "I agree.",
        "submit": "Send",
        "err_form": "Some answers need another look; see the notes below.",
        "err_refresh": "This form had expired. Please check your answers and send it again.",
        "err_button": "For your security, this page had to be refreshed. Please press the button again.",
        "err_name": "Please enter your name.",
        "err_long": "This is too long: at most {limit} characters.",
        "err_characters": "Please remove line breaks and invisible formatting characters.",
        "err_email": "Please enter a valid email address, such as name@example.org.",
        "err_choice": "Please choose one of the options given.",
        "err_scope": "Please choose all actions, or tick at least one campaign.",
        "err_channels": "Please tick at least one channel.",
        "err_cap": "Please enter a whole number from 1 to {max}, or leave it empty.",
        "err_words": "Your own words are too long: at most {limit} characters.",
        "err_agree": "Please tick the box to give your consent.",
        "sent_title": "Please check your inbox",
        "sent_body": (
            "If the address you gave can receive email, a message with a confirmation link is on its "
            "way. Nothing is sent in your name until you open that link and confirm. The link works "
            "for 48 hours."
        ),
        "sent_more": (
            "Nothing after a few minutes? Please look in your spam folder. If you already asked in the "
            "last hour, we do not send another email so soon."
        ),
        "limited_title": "Please wait a little",
        "limited_body": "Many forms were sent from your network in the last hour. Please try again later.",
        "closed_title": "This action is not open",
        "closed_body": "There is no open action at this address; it may have ended.",
        "unavailable_title": "Sign-up is not available",
        "unavailable_body": "This site cannot take sign-ups yet. Please come back later.",
        "invalid_title": "This link does not work",
        "invalid_body": (
            "This link is not valid or has expired. Confirmation links work for 48 hours; you are "
            "welcome to fill in the form again."
        ),
        "invalid_revoke_title": "This link does not work",
        "invalid_revoke_body": (
            "This link is not valid or has expired. Please use the link in our most recent email, or "
            "reply to it and we will withdraw your consent for you."
        ),
        "used_title": "This link was already used",
        "used_body": (
            "This confirmation link has already been used, or the request was withdrawn. If you "
            "confirmed before, nothing more is needed."
        ),
        "confirm_title": "Confirm your consent",
        "confirm_body": "Press the button to confirm that we may send letters in your name, as you chose.",
        "confirm_button": "Confirm",
        "confirmed_title": "Thank you",
        "confirmed_body": (
            "Your consent is recorded. From now on, letters are sent in your name as you chose."
        ),
        "confirmed_withdraw": "You can withdraw at any time, with the link in our emails or here:",
        "withdraw_link": "Withdraw my consent",
        "revoke_title": "Withdraw your consent",
        "revoke_body": (
            "Press the button and we stop sending letters in your name at once: letters not yet sent "
            "are cancelled. Letters already sent cannot be called back."
        ),
        "revoke_button": "Withdraw my consent",
        "revoked_title": "Your consent is withdrawn",
        "revoked_body": (
            "Nothing more will be sent in your name, and any request still waiting for confirmation is "
            "cancelled. If you change your mind, you are welcome to sign up again."
        ),
        "join_general": "Sign up for all urgent actions",
        "join_again": "Fill in the form again",
        "mail_subject": "Please confirm: letters in your name",
        "mail_body": (
            "Hello {name},\n\n"
            "Someone, most likely you, asked {org} to send letters in your name for {what}.\n\n"
            "To confirm, open this link and press the Confirm button. The link works for 48 hours:\n"
            "{confirm}\n\n"
            "If this was not you, there is nothing to do: nothing is sent in your name unless you "
            "confirm, and this request will simply expire.\n\n"
            "You can withdraw your consent at any time, now or later, with this link:\n"
            "{revoke}\n\n"
            "Thank you for standing up for people at risk.\n"
            "{org}\n"
        ),
        "what_all": "all urgent actions",
        "what_tags": "the campaigns {tags}",
        "what_action": "the action “{title}”",
    },
    "fr": {
        "lang_name": "Français",
        "languages_nav": "Langue de cette page",
        "title_general": "Signer des lettres pour des personnes en danger",
        "title_action": "Signer les lettres : {title}",
        "intro_general": (
            "Les actions urgentes demandent aux autorités de libérer ou de protéger des personnes en "
            "danger, ou de donner de leurs nouvelles. Avec votre accord, {org} envoie ces lettres en "
            "votre nom, par e-mail ou par fax. Vous choisissez ci-dessous ce que vous autorisez ; vous "
            "pouvez retirer votre accord à tout moment."
        ),
        "intro_action": (
            "Avec votre accord, {org} envoie en votre nom les lettres de cette action, par e-mail ou par "
            "fax, aux autorités qu’elle désigne. Vous pouvez retirer votre accord à tout moment."
        ),
        "legend_you": "Vous",
        "name": "Votre nom",
        "name_help": "Tel qu’il doit figurer au bas des lettres.",
        "email": "Votre adresse e-mail",
        "email_help": (
            "Nous vous envoyons un lien de confirmation. Les autorités ne voient cette adresse que si "
            "vous choisissez ci-dessous de recevoir directement leurs réponses."
        ),
        "city": "Ville (facultatif)",
        "country": "Pays (facultatif)",
        "language": "Votre langue",
        "language_help": "La langue de nos e-mails.",
        "legend_scope": "Quelles actions",
        "scope_all": "Toutes les actions urgentes",
        "scope_tags": "Seulement les campagnes cochées :",
        "scope_action": "Cette action seulement.",
        "legend_how": "Comment vos lettres sont envoyées",
        "channels": "Moyens d’envoi",
        "channel_email": "E-mail",
        "channel_fax": "Fax",
        "sign_languages": "Langues dans lesquelles vous signez (facultatif)",
        "sign_languages_help": "Ne cochez rien pour signer les lettres quelle que soit leur langue.",
        "name_display": "Comment votre nom apparaît",
        "display_full": "Nom, ville et pays",
        "display_name": "Nom seulement",
        "cap": "Nombre maximal de lettres par mois (facultatif)",
        "cap_help": "Un nombre entier de 1 à {max} ; laissez vide pour ne fixer aucune limite.",
        "expiry": "Cette autorisation vaut",
        "expiry_none": "jusqu’à ce que je la retire",
        "expiry_months": "{n} mois",
        "receipts": "Des e-mails récapitulant les lettres envoyées en mon nom",
        "receipts_off": "Non, merci",
        "receipts_weekly": "Chaque semaine",
        "receipts_monthly": "Chaque mois",
        "replies": "Où vont les réponses des autorités",
        "replies_risk": (
            "Les autorités auxquelles vous écrivez sont souvent le gouvernement que les lettres "
            "critiquent. Si leurs réponses vous parviennent directement, elles apprennent votre adresse "
            "e-mail et peuvent découvrir qui vous êtes. Si cela peut vous mettre en danger, vous ou "
            "votre famille, laissez les réponses aller à {org}."
        ),
        "replies_organisation": "À {org} : les lettres ne portent pas mon adresse e-mail",
        "replies_direct": (
            "Directement à moi : les lettres envoyées par e-mail portent mon adresse e-mail, "
            "pour les réponses"
        ),
        "legend_words": "Avec vos propres mots (facultatif)",
        "words_help": (
            "Quelques phrases ajoutées à vos lettres pour cette action, en texte simple, jusqu’à {limit} "
            "caractères. Toute mise en forme est retirée."
        ),
        "legend_consent": "Votre accord",
        "consent_text": (
            "J’autorise {org} à envoyer des lettres en mon nom aux autorités désignées dans les actions "
            "choisies ci-dessus, par les moyens choisis. {org} rédige les lettres ; elles portent mon "
            "nom et, si je l’ai choisi, ma ville, mon pays et mes propres mots. Les autorités n’ont mon "
            "adresse e-mail que si j’ai choisi ci-dessus de recevoir directement leurs réponses. Je peux "
            "retirer cette autorisation "
            "à tout moment, en un clic ; les lettres pas encore envoyées sont alors annulées. Mes "
            "données servent uniquement à envoyer ces lettres et à m’écrire à leur sujet."
        ),
        "consent_version": "Version {version} de ce texte.",
        "agree": "J’accepte.",
        "submit": "Envoyer",
        "err_form": "Certaines réponses sont à revoir ; voir les remarques ci-dessous.",
        "err_refresh": (
            "Ce formulaire avait expiré. Merci de vérifier vos réponses et de l’envoyer à nouveau."
        ),
        "err_button": (
            "Pour votre sécurité, cette page a dû être actualisée. Merci d’appuyer à nouveau sur le bouton."
        ),
        "err_name": "Merci d’indiquer votre nom.",
        "err_long": "C’est trop long : {limit} caractères au plus.",
        "err_characters": (
            "Merci de retirer les retours à la ligne et les caractères de mise en forme invisibles."
        ),
        "err_email": "Merci d’indiquer une adresse e-mail valide, par exemple nom@example.org.",
        "err_choice": "Merci de choisir l’une des options proposées.",
        "err_scope": "Merci de choisir toutes les actions, ou de cocher au moins une campagne.",
        "err_channels": "Merci de cocher au moins un moyen d’envoi.",
        "err_cap": "Merci d’indiquer un nombre entier de 1 à {max}, ou de laisser vide.",
        "err_words": "Votre texte est trop long : {limit} caractères au plus.",
        "err_agree": "Merci de cocher la case pour donner votre accord.",
        "sent_title": "Merci de consulter votre boîte de réception",
        "sent_body": (
            "Si l’adresse indiquée peut recevoir des e-mails, un message avec un lien de confirmation "
            "est en route. Rien n’est envoyé en votre nom tant que vous n’avez pas ouvert ce lien et "
            "confirmé. Le lien reste valable 48 heures."
        ),
        "sent_more": (
            "Rien après quelques minutes ? Regardez dans vos courriers indésirables. Si vous avez déjà "
            "fait la demande dans l’heure, nous n’envoyons pas de nouvel e-mail si tôt."
        ),
        "limited_title": "Merci de patienter un peu",
        "limited_body": (
            "De nombreux formulaires ont été envoyés depuis votre réseau dans la dernière heure. Merci "
            "de réessayer plus tard."
        ),
        "closed_title": "Cette action n’est pas ouverte",
        "closed_body": "Aucune action ouverte ne se trouve à cette adresse ; elle est peut-être terminée.",
        "unavailable_title": "L’inscription n’est pas disponible",
        "unavailable_body": "Ce site ne peut pas encore recevoir d’inscriptions. Merci de revenir plus tard.",
        "invalid_title": "Ce lien ne fonctionne pas",
        "invalid_body": (
            "Ce lien n’est pas valide ou a expiré. Les liens de confirmation restent valables 48 heures ; "
            "vous pouvez remplir à nouveau le formulaire."
        ),
        "invalid_revoke_title": "Ce lien ne fonctionne pas",
        "invalid_revoke_body": (
            "Ce lien n’est pas valide ou a expiré. Utilisez le lien de notre e-mail le plus récent, ou "
            "répondez-y et nous retirerons votre accord pour vous."
        ),
        "used_title": "Ce lien a déjà été utilisé",
        "used_body": (
            "Ce lien de confirmation a déjà été utilisé, ou la demande a été retirée. Si vous avez déjà "
            "confirmé, vous n’avez plus rien à faire."
        ),
        "confirm_title": "Confirmez votre accord",
        "confirm_body": (
            "Appuyez sur le bouton pour confirmer que nous pouvons envoyer des lettres en votre nom, "
            "comme vous l’avez choisi."
        ),
        "confirm_button": "Confirmer",
        "confirmed_title": "Merci",
        "confirmed_body": (
            "Votre accord est enregistré. Désormais, des lettres sont envoyées en votre nom comme vous "
            "l’avez choisi."
        ),
        "confirmed_withdraw": (
            "Vous pouvez retirer votre accord à tout moment, avec le lien de nos e-mails ou ici :"
        ),
        "withdraw_link": "Retirer mon accord",
        "revoke_title": "Retirer votre accord",
        "revoke_body": (
            "Appuyez sur le bouton et nous cessons aussitôt d’envoyer des lettres en votre nom : les "
            "lettres pas encore envoyées sont annulées. Celles déjà envoyées ne peuvent pas être "
            "rappelées."
        ),
        "revoke_button": "Retirer mon accord",
        "revoked_title": "Votre accord est retiré",
        "revoked_body": (
            "Plus rien ne sera envoyé en votre nom, et toute demande encore en attente de confirmation "
            "est annulée. Si vous changez d’avis, vous pouvez vous inscrire à nouveau."
        ),
        "join_general": "S’inscrire pour toutes les actions urgentes",
        "join_again": "Remplir à nouveau le formulaire",
        "mail_subject": "Merci de confirmer : des lettres en votre nom",
        "mail_body": (
            "Bonjour {name},\n\n"
            "Quelqu’un, sans doute vous-même, a demandé à {org} d’envoyer des lettres en votre nom pour "
            "{what}.\n\n"
            "Pour confirmer, ouvrez ce lien et appuyez sur le bouton « Confirmer ». Le lien reste valable "
            "48 heures :\n"
            "{confirm}\n\n"
            "Si ce n’était pas vous, vous n’avez rien à faire : rien n’est envoyé en votre nom sans votre "
            "confirmation, et cette demande expirera d’elle-même.\n\n"
            "Vous pouvez retirer votre accord à tout moment, maintenant ou plus tard, avec ce lien :\n"
            "{revoke}\n\n"
            "Merci de vous mobiliser pour les personnes en danger.\n"
            "{org}\n"
        ),
        "what_all": "toutes les actions urgentes",
        "what_tags": "les campagnes {tags}",
        "what_action": "l’action « {title} »",
    },
    "es": {
        "lang_name": "Español",
        "languages_nav": "Idioma de esta página",
        "title_general": "Firme cartas por personas en peligro",
        "title_action": "Firme las cartas: {title}",
        "intro_general": (
            "Las acciones urgentes piden a las autoridades que liberen o protejan a personas en peligro, "
            "o que den noticias de ellas. Con su autorización, {org} envía estas cartas en su nombre, "
            "por correo electrónico o fax. A continuación elija lo que autoriza; puede retirar su "
            "autorización en cualquier momento."
        ),
        "intro_action": (
            "Con su autorización, {org} envía en su nombre las cartas de esta acción, por correo "
            "electrónico o fax, a las autoridades que esta indica. Puede retirar su autorización en "
            "cualquier momento."
        ),
        "legend_you": "Sus datos",
        "name": "Su nombre",
        "name_help": "Tal como debe aparecer al pie de las cartas.",
        "email": "Su correo electrónico",
        "email_help": (
            "Le enviamos un enlace de confirmación. Las autoridades solo ven esta dirección si usted "
            "elige abajo recibir sus respuestas directamente."
        ),
        "city": "Ciudad (opcional)",
        "country": "País (opcional)",
        "language": "Su idioma",
        "language_help": "El idioma de nuestros correos.",
        "legend_scope": "Qué acciones",
        "scope_all": "Todas las acciones urgentes",
        "scope_tags": "Solo las campañas que marque:",
        "scope_action": "Solo esta acción.",
        "legend_how": "Cómo se envían sus cartas",
        "channels": "Medios de envío",
        "channel_email": "Correo electrónico",
        "channel_fax": "Fax",
        "sign_languages": "Idiomas en los que firma (opcional)",
        "sign_languages_help": "No marque ninguno para firmar cartas en cualquier idioma.",
        "name_display": "Cómo aparece su nombre",
        "display_full": "Nombre, ciudad y país",
        "display_name": "Solo el nombre",
        "cap": "Máximo de cartas al mes (opcional)",
        "cap_help": "Un número entero del 1 al {max}; déjelo vacío para no poner límite.",
        "expiry": "Esta autorización dura",
        "expiry_none": "hasta que la retire",
        "expiry_months": "{n} meses",
        "receipts": "Correos con la lista de cartas enviadas en mi nombre",
        "receipts_off": "No, gracias",
        "receipts_weekly": "Cada semana",
        "receipts_monthly": "Cada mes",
        "replies": "Adónde van las respuestas de las autoridades",
        "replies_risk": (
            "Las autoridades a las que usted escribe suelen ser el gobierno que las cartas critican. Si "
            "sus respuestas le llegan directamente, conocen su dirección de correo electrónico y pueden "
            "averiguar quién es usted. Si eso puede ponerle en peligro a usted o a su familia, deje que "
            "las respuestas vayan a {org}."
        ),
        "replies_organisation": "A {org}: las cartas no llevan mi dirección de correo electrónico",
        "replies_direct": (
            "Directamente a mí: las cartas enviadas por correo electrónico llevan mi dirección, para las "
            "respuestas"
        ),
        "legend_words": "Con sus propias palabras (opcional)",
        "words_help": (
            "Unas frases que se añaden a sus cartas de esta acción, como texto simple, de hasta {limit} "
            "caracteres. Se quita cualquier formato."
        ),
        "legend_consent": "Su consentimiento",
        "consent_text": (
            "Autorizo a {org} a enviar cartas en mi nombre a las autoridades indicadas en las acciones "
            "que elegí arriba, por los medios que elegí. {org} redacta las cartas; llevan mi nombre y, "
            "si así lo elegí, mi ciudad, mi país y mis propias palabras. Las autoridades solo tienen mi "
            "dirección de correo electrónico si elegí arriba recibir sus respuestas directamente. "
            "Puedo retirar esta autorización en "
            "cualquier momento con un solo clic; las cartas aún no enviadas se cancelan entonces. Mis "
            "datos solo se usan para enviar estas cartas y para escribirme sobre ellas."
        ),
        "consent_version": "Versión {version} de este texto.",
        "agree": "Estoy de acuerdo.",
        "submit": "Enviar",
        "err_form": "Algunas respuestas necesitan revisión; vea las notas más abajo.",
        "err_refresh": "Este formulario había caducado. Revise sus respuestas y envíelo de nuevo.",
        "err_button": "Por su seguridad, hubo que actualizar esta página. Pulse el botón de nuevo.",
        "err_name": "Escriba su nombre, por favor.",
        "err_long": "Es demasiado largo: {limit} caracteres como máximo.",
        "err_characters": "Quite los saltos de línea y los caracteres de formato invisibles, por favor.",
        "err_email": "Escriba una dirección de correo válida, por ejemplo nombre@example.org.",
        "err_choice": "Elija una de las opciones ofrecidas, por favor.",
        "err_scope": "Elija todas las acciones, o marque al menos una campaña.",
        "err_channels": "Marque al menos un medio de envío.",
        "err_cap": "Escriba un número entero del 1 al {max}, o déjelo vacío.",
        "err_words": "Su texto es demasiado largo: {limit} caracteres como máximo.",
        "err_agree": "Marque la casilla para dar su consentimiento.",
        "sent_title": "Revise su bandeja de entrada",
        "sent_body": (
            "Si la dirección indicada puede recibir correo, le llegará un mensaje con un enlace de "
            "confirmación. No se envía nada en su nombre hasta que abra ese enlace y confirme. El enlace "
            "es válido durante 48 horas."
        ),
        "sent_more": (
            "¿No llega nada en unos minutos? Mire en la carpeta de correo no deseado. Si ya lo pidió en "
            "la última hora, no enviamos otro correo tan pronto."
        ),
        "limited_title": "Espere un poco, por favor",
        "limited_body": (
            "Se enviaron muchos formularios desde su red en la última hora. Inténtelo de nuevo más tarde."
        ),
        "closed_title": "Esta acción no está abierta",
        "closed_body": "No hay ninguna acción abierta en esta dirección; quizá ya terminó.",
        "unavailable_title": "La inscripción no está disponible",
        "unavailable_body": "Este sitio aún no puede recibir inscripciones. Vuelva más tarde, por favor.",
        "invalid_title": "Este enlace no funciona",
        "invalid_body": (
            "Este enlace no es válido o ha caducado. Los enlaces de confirmación son válidos durante 48 "
            "horas; puede volver a rellenar el formulario."
        ),
        "invalid_revoke_title": "Este enlace no funciona",
        "invalid_revoke_body": (
            "Este enlace no es válido o ha caducado. Use el enlace de nuestro correo más reciente, o "
            "respóndalo y retiraremos su consentimiento por usted."
        ),
        "used_title": "Este enlace ya se usó",
        "used_body": (
            "Este enlace de confirmación ya se usó, o la solicitud se retiró. Si ya confirmó, no hace "
            "falta nada más."
        ),
        "confirm_title": "Confirme su consentimiento",
        "confirm_body": (
            "Pulse el botón para confirmar que podemos enviar cartas en su nombre, tal como lo eligió."
        ),
        "confirm_button": "Confirmar",
        "confirmed_title": "Gracias",
        "confirmed_body": (
            "Su consentimiento quedó registrado. A partir de ahora se envían cartas en su nombre tal como "
            "lo eligió."
        ),
        "confirmed_withdraw": (
            "Puede retirarlo en cualquier momento, con el enlace de nuestros correos o aquí:"
        ),
        "withdraw_link": "Retirar mi consentimiento",
        "revoke_title": "Retire su consentimiento",
        "revoke_body": (
            "Pulse el botón y dejaremos de enviar cartas en su nombre de inmediato: las cartas aún no "
            "enviadas se cancelan. Las ya enviadas no se pueden recuperar."
        ),
        "revoke_button": "Retirar mi consentimiento",
        "revoked_title": "Su consentimiento está retirado",
        "revoked_body": (
            "No se enviará nada más en su nombre, y cualquier solicitud pendiente de confirmación queda "
            "cancelada. Si cambia de opinión, puede inscribirse de nuevo."
        ),
        "join_general": "Inscribirse para todas las acciones urgentes",
        "join_again": "Rellenar de nuevo el formulario",
        "mail_subject": "Confirme, por favor: cartas en su nombre",
        "mail_body": (
            "Hola, {name}:\n\n"
            "Alguien, seguramente usted, pidió a {org} que envíe cartas en su nombre para {what}.\n\n"
            "Para confirmar, abra este enlace y pulse el botón «Confirmar». El enlace es válido durante "
            "48 horas:\n"
            "{confirm}\n\n"
            "Si no fue usted, no tiene que hacer nada: no se envía nada en su nombre sin su "
            "confirmación, y esta solicitud caducará sola.\n\n"
            "Puede retirar su consentimiento en cualquier momento, ahora o más adelante, con este "
            "enlace:\n"
            "{revoke}\n\n"
            "Gracias por defender a las personas en peligro.\n"
            "{org}\n"
        ),
        "what_all": "todas las acciones urgentes",
        "what_tags": "las campañas {tags}",
        "what_action": "la acción «{title}»",
    },
    "de": {
        "lang_name": "Deutsch",
        "languages_nav": "Sprache dieser Seite",
        "title_general": "Briefe für gefährdete Menschen unterschreiben",
        "title_action": "Die Briefe unterschreiben: {title}",
        "intro_general": (
            "Eilaktionen fordern Verantwortliche auf, gefährdete Menschen freizulassen, zu schützen oder "
            "über ihr Schicksal Auskunft zu geben. Mit Ihrer Erlaubnis sendet {org} diese Briefe in Ihrem "
            "Namen, per E-Mail oder Fax. Unten wählen Sie, was Sie erlauben; Sie können jederzeit "
            "widerrufen."
        ),
        "intro_action": (
            "Mit Ihrer Erlaubnis sendet {org} die Briefe dieser Aktion in Ihrem Namen, per E-Mail oder "
            "Fax, an die darin genannten Verantwortlichen. Sie können jederzeit widerrufen."
        ),
        "legend_you": "Zu Ihrer Person",
        "name": "Ihr Name",
        "name_help": "So, wie er unter den Briefen stehen soll.",
        "email": "Ihre E-Mail-Adresse",
        "email_help": (
            "Wir senden Ihnen einen Link zur Bestätigung. Die Behörden sehen diese Adresse nur, wenn Sie "
            "unten wählen, dass ihre Antworten direkt an Sie gehen."
        ),
        "city": "Stadt (freiwillig)",
        "country": "Land (freiwillig)",
        "language": "Ihre Sprache",
        "language_help": "Die Sprache unserer E-Mails an Sie.",
        "legend_scope": "Welche Aktionen",
        "scope_all": "Alle Eilaktionen",
        "scope_tags": "Nur die angekreuzten Kampagnen:",
        "scope_action": "Nur diese Aktion.",
        "legend_how": "Wie Ihre Briefe gesendet werden",
        "channels": "Wege",
        "channel_email": "E-Mail",
        "channel_fax": "Fax",
        "sign_languages": "Sprachen, in denen Sie unterschreiben (freiwillig)",
        "sign_languages_help": "Kreuzen Sie keine an, um Briefe in jeder Sprache zu unterschreiben.",
        "name_display": "Wie Ihr Name erscheint",
        "display_full": "Name, Stadt und Land",
        "display_name": "Nur der Name",
        "cap": "Höchstens so viele Briefe im Monat (freiwillig)",
        "cap_help": "Eine ganze Zahl von 1 bis {max}; leer lassen für keine Grenze.",
        "expiry": "Diese Erlaubnis gilt",
        "expiry_none": "bis ich sie widerrufe",
        "expiry_months": "{n} Monate",
        "receipts": "E-Mails mit den in meinem Namen gesendeten Briefen",
        "receipts_off": "Nein, danke",
        "receipts_weekly": "Jede Woche",
        "receipts_monthly": "Jeden Monat",
        "replies": "Wohin die Antworten der Behörden gehen",
        "replies_risk": (
            "Die Behörden, an die Sie schreiben, sind oft die Regierung, die in den Briefen kritisiert "
            "wird. Gehen ihre Antworten direkt an Sie, erfahren sie Ihre E-Mail-Adresse und können "
            "herausfinden, wer Sie sind. Wenn Sie oder Ihre Familie dadurch in Gefahr geraten könnten, "
            "lassen Sie die Antworten an {org} gehen."
        ),
        "replies_organisation": "An {org}: Die Briefe enthalten meine E-Mail-Adresse nicht",
        "replies_direct": (
            "Direkt an mich: Per E-Mail gesendete Briefe enthalten meine E-Mail-Adresse für Antworten"
        ),
        "legend_words": "In Ihren eigenen Worten (freiwillig)",
        "words_help": (
            "Ein paar Sätze, die Ihren Briefen zu dieser Aktion als reiner Text hinzugefügt werden, "
            "höchstens {limit} Zeichen. Formatierungen werden entfernt."
        ),
        "legend_consent": "Ihre Zustimmung",
        "consent_text": (
            "Ich erlaube {org}, in meinem Namen Briefe an die Verantwortlichen zu senden, die in den oben "
            "gewählten Aktionen genannt sind, über die von mir gewählten Wege. {org} verfasst die Briefe; "
            "sie tragen meinen Namen und, wenn ich es gewählt habe, meine Stadt, mein Land und meine "
            "eigenen Worte. Die Verantwortlichen erfahren meine E-Mail-Adresse nur, wenn ich oben gewählt "
            "habe, dass ihre Antworten direkt an mich gehen. Ich "
            "kann diese Erlaubnis jederzeit mit einem Klick widerrufen; noch nicht gesendete Briefe "
            "werden dann storniert. Meine Angaben dienen nur dazu, diese Briefe zu senden und mir "
            "darüber zu schreiben."
        ),
        "consent_version": "Fassung {version} dieses Textes.",
        "agree": "Ich stimme zu.",
        "submit": "Senden",
        "err_form": "Einige Angaben brauchen noch einen Blick; siehe die Hinweise unten.",
        "err_refresh": (
            "Dieses Formular war abgelaufen. Bitte prüfen Sie Ihre Angaben und senden Sie es erneut."
        ),
        "err_button": (
            "Zu Ihrer Sicherheit musste diese Seite neu geladen werden. Bitte drücken Sie den Knopf "
            "noch einmal."
        ),
        "err_name": "Bitte geben Sie Ihren Namen an.",
        "err_long": "Das ist zu lang: höchstens {limit} Zeichen.",
        "err_characters": "Bitte entfernen Sie Zeilenumbrüche und unsichtbare Formatierungszeichen.",
        "err_email": "Bitte geben Sie eine gültige E-Mail-Adresse an, etwa name@example.org.",
        "err_choice": "Bitte wählen Sie eine der angebotenen Möglichkeiten.",
        "err_scope": "Bitte wählen Sie alle Aktionen, oder kreuzen Sie mindestens eine Kampagne an.",
        "err_channels": "Bitte kreuzen Sie mindestens einen Weg an.",
        "err_cap": "Bitte geben Sie eine ganze Zahl von 1 bis {max} an, oder lassen Sie das Feld leer.",
        "err_words": "Ihr Text ist zu lang: höchstens {limit} Zeichen.",
        "err_agree": "Bitte kreuzen Sie das Kästchen an, um zuzustimmen.",
        "sent_title": "Bitte sehen Sie in Ihrem Posteingang nach",
        "sent_body": (
            "Wenn die angegebene Adresse E-Mails empfangen kann, ist eine Nachricht mit einem "
            "Bestätigungslink unterwegs. In Ihrem Namen wird nichts gesendet, bevor Sie diesen Link "
            "öffnen und bestätigen. Der Link gilt 48 Stunden."
        ),
        "sent_more": (
            "Nach ein paar Minuten noch nichts da? Bitte sehen Sie im Spam-Ordner nach. Wenn Sie in der "
            "letzten Stunde schon angefragt haben, senden wir so bald keine weitere E-Mail."
        ),
        "limited_title": "Bitte warten Sie ein wenig",
        "limited_body": (
            "Aus Ihrem Netz wurden in der letzten Stunde viele Formulare gesendet. Bitte versuchen Sie es "
            "später noch einmal."
        ),
        "closed_title": "Diese Aktion ist nicht offen",
        "closed_body": "Unter dieser Adresse gibt es keine offene Aktion; vielleicht ist sie beendet.",
        "unavailable_title": "Die Anmeldung ist nicht verfügbar",
        "unavailable_body": "Diese Seite nimmt noch keine Anmeldungen an. Bitte kommen Sie später wieder.",
        "invalid_title": "Dieser Link funktioniert nicht",
        "invalid_body": (
            "Dieser Link ist ungültig oder abgelaufen. Bestätigungslinks gelten 48 Stunden; Sie können "
            "das Formular gern noch einmal ausfüllen."
        ),
        "invalid_revoke_title": "Dieser Link funktioniert nicht",
        "invalid_revoke_body": (
            "Dieser Link ist ungültig oder abgelaufen. Bitte nutzen Sie den Link in unserer neuesten "
            "E-Mail, oder antworten Sie darauf, und wir widerrufen Ihre Zustimmung für Sie."
        ),
        "used_title": "Dieser Link wurde schon benutzt",
        "used_body": (
            "Dieser Bestätigungslink wurde schon benutzt, oder die Anfrage wurde zurückgezogen. Wenn Sie "
            "schon bestätigt haben, ist nichts weiter nötig."
        ),
        "confirm_title": "Bestätigen Sie Ihre Zustimmung",
        "confirm_body": (
            "Drücken Sie den Knopf, um zu bestätigen, dass wir Briefe in Ihrem Namen senden dürfen, so "
            "wie Sie es gewählt haben."
        ),
        "confirm_button": "Bestätigen",
        "confirmed_title": "Vielen Dank",
        "confirmed_body": (
            "Ihre Zustimmung ist gespeichert. Von jetzt an werden Briefe in Ihrem Namen gesendet, so wie "
            "Sie es gewählt haben."
        ),
        "confirmed_withdraw": "Sie können jederzeit widerrufen, mit dem Link in unseren E-Mails oder hier:",
        "withdraw_link": "Meine Zustimmung widerrufen",
        "revoke_title": "Ihre Zustimmung widerrufen",
        "revoke_body": (
            "Drücken Sie den Knopf, und wir senden sofort keine Briefe mehr in Ihrem Namen: noch nicht "
            "gesendete Briefe werden storniert. Bereits gesendete Briefe lassen sich nicht zurückholen."
        ),
        "revoke_button": "Meine Zustimmung widerrufen",
        "revoked_title": "Ihre Zustimmung ist widerrufen",
        "revoked_body": (
            "In Ihrem Namen wird nichts mehr gesendet, und eine noch unbestätigte Anfrage ist "
            "zurückgezogen. Wenn Sie es sich anders überlegen, können Sie sich gern wieder anmelden."
        ),
        "join_general": "Für alle Eilaktionen anmelden",
        "join_again": "Das Formular noch einmal ausfüllen",
        "mail_subject": "Bitte bestätigen: Briefe in Ihrem Namen",
        "mail_body": (
            "Hallo {name},\n\n"
            "jemand, vermutlich Sie selbst, hat {org} gebeten, in Ihrem Namen Briefe für {what} zu "
            "senden.\n\n"
            "Zum Bestätigen öffnen Sie diesen Link und drücken Sie auf „Bestätigen“. Der Link gilt 48 "
            "Stunden:\n"
            "{confirm}\n\n"
            "Falls Sie das nicht waren, müssen Sie nichts tun: Ohne Ihre Bestätigung wird nichts in Ihrem "
            "Namen gesendet, und die Anfrage verfällt von selbst.\n\n"
            "Mit diesem Link können Sie Ihre Zustimmung jederzeit widerrufen, jetzt oder später:\n"
            "{revoke}\n\n"
            "Danke, dass Sie sich für gefährdete Menschen einsetzen.\n"
            "{org}\n"
        ),
        "what_all": "alle Eilaktionen",
        "what_tags": "die Kampagnen {tags}",
        "what_action": "die Aktion „{title}“",
    },
    "zh-Hans": {
        "lang_name": "简体中文",
        "languages_nav": "本页语言",
        "title_general": "为身处危险的人们联署信件",
        "title_action": "联署信件：{title}",
        "intro_general": (
            "紧急行动呼吁官员释放、保护身处危险的人们，或公开他们的下落。经您授权，{org} "
            "会以您的名义，通过电子邮件或传真发送这些信件。请在下方选择您授权的范围；您可以随时撤回。"
        ),
        "intro_action": (
            "经您授权，{org} 会以您的名义，通过电子邮件或传真，把本次行动的信件发送给行动中列出的官员。"
            "您可以随时撤回。"
        ),
        "legend_you": "您的信息",
        "name": "您的姓名",
        "name_help": "即信件落款处显示的姓名。",
        "email": "您的电子邮箱",
        "email_help": (
            "我们会向此邮箱发送确认链接。只有当您在下方选择让官员的回复直接寄给您时，官员才会看到此地址。"
        ),
        "city": "城市（选填）",
        "country": "国家或地区（选填）",
        "language": "您的语言",
        "language_help": "我们给您的邮件所用的语言。",
        "legend_scope": "哪些行动",
        "scope_all": "所有紧急行动",
        "scope_tags": "仅限我勾选的运动：",
        "scope_action": "仅限本次行动。",
        "legend_how": "信件如何发送",
        "channels": "发送方式",
        "channel_email": "电子邮件",
        "channel_fax": "传真",
        "sign_languages": "您联署的信件语言（选填）",
        "sign_languages_help": "不勾选任何语言，即联署任何语言的信件。",
        "name_display": "您的姓名如何显示",
        "display_full": "姓名、城市和国家",
        "display_name": "仅显示姓名",
        "cap": "每月最多信件数（选填）",
        "cap_help": "填写 1 到 {max} 之间的整数；留空则不设上限。",
        "expiry": "本授权有效期",
        "expiry_none": "直到我撤回为止",
        "expiry_months": "{n} 个月",
        "receipts": "列出以我的名义所发信件的邮件",
        "receipts_off": "不需要，谢谢",
        "receipts_weekly": "每周一次",
        "receipts_monthly": "每月一次",
        "replies": "官员的回复寄往何处",
        "replies_risk": (
            "您写信的对象往往正是信中批评的政府。如果他们的回复直接寄给您，他们就会知道您的电子邮箱地址，"
            "并可能查出您是谁。如果这可能使您或您的家人陷入危险，请让回复寄给 {org}。"
        ),
        "replies_organisation": "寄给 {org}：信件中不含我的电子邮箱地址",
        "replies_direct": "直接寄给我：通过电子邮件发送的信件附有我的电子邮箱地址，以便回复",
        "legend_words": "用您自己的话说（选填）",
        "words_help": (
            "几句话，以纯文本形式加入您在本次行动中的信件，最多 {limit} 个字符。任何格式标记都会被删除。"
        ),
        "legend_consent": "您的同意",
        "consent_text": (
            "我授权 {org} 以我的名义，通过我所选择的方式，向我在上方所选行动中列出的官员发送信件。"
            "信件由 {org} 撰写，署有我的姓名；如我选择，还会写上我的城市、国家和我自己的话。"
            "只有当我在上方选择让官员的回复直接寄给我时，官员才会得到我的电子邮箱地址。我可以随时一键撤回此授权，"
            "尚未发送的信件将随即取消。我的信息仅用于发送这些信件以及就这些信件与我联系。"
        ),
        "consent_version": "本文本版本：{version}。",
        "agree": "我同意。",
        "submit": "提交",
        "err_form": "部分内容需要修改，请看下方提示。",
        "err_refresh": "此表单已过期。请检查您填写的内容后重新提交。",
        "err_button": "为了您的安全，本页需要刷新。请再按一次按钮。",
        "err_name": "请填写您的姓名。",
        "err_long": "内容太长：最多 {limit} 个字符。",
        "err_characters": "请删除换行符和不可见的格式字符。",
        "err_email": "请填写有效的电子邮箱地址，例如 name@example.org。",
        "err_choice": "请从给出的选项中选择一项。",
        "err_scope": "请选择所有行动，或至少勾选一项运动。",
        "err_channels": "请至少勾选一种发送方式。",
        "err_cap": "请填写 1 到 {max} 之间的整数，或留空。",
        "err_words": "您的文字太长：最多 {limit} 个字符。",
        "err_agree": "请勾选此框以表示同意。",
        "sent_title": "请查看您的收件箱",
        "sent_body": (
            "如果您填写的地址可以接收邮件，一封附有确认链接的邮件正在发送途中。在您打开该链接并确认之前，"
            "我们不会以您的名义发送任何信件。链接在 48 小时内有效。"
        ),
        "sent_more": (
            "几分钟后仍未收到？请查看垃圾邮件文件夹。如果您在过去一小时内已经提交过，"
            "我们不会这么快再次发送邮件。"
        ),
        "limited_title": "请稍候",
        "limited_body": "过去一小时内，从您所在的网络提交了很多表单。请稍后再试。",
        "closed_title": "此行动未开放",
        "closed_body": "此地址没有开放中的行动；它可能已经结束。",
        "unavailable_title": "暂时无法报名",
        "unavailable_body": "本网站暂时无法接受报名。请稍后再来。",
        "invalid_title": "此链接无法使用",
        "invalid_body": "此链接无效或已过期。确认链接在 48 小时内有效；欢迎您重新填写表单。",
        "invalid_revoke_title": "此链接无法使用",
        "invalid_revoke_body": (
            "此链接无效或已过期。请使用我们最近一封邮件中的链接，或直接回复该邮件，我们会为您撤回同意。"
        ),
        "used_title": "此链接已被使用",
        "used_body": "此确认链接已被使用，或该请求已被撤回。如果您之前已经确认，则无需再做任何事。",
        "confirm_title": "确认您的同意",
        "confirm_body": "请按下按钮，确认我们可以按照您的选择以您的名义发送信件。",
        "confirm_button": "确认",
        "confirmed_title": "谢谢您",
        "confirmed_body": "您的同意已记录。从现在起，我们将按照您的选择以您的名义发送信件。",
        "confirmed_withdraw": "您可以随时撤回，使用我们邮件中的链接或此处：",
        "withdraw_link": "撤回我的同意",
        "revoke_title": "撤回您的同意",
        "revoke_body": (
            "按下按钮后，我们会立即停止以您的名义发送信件：尚未发送的信件将被取消。已经发送的信件无法收回。"
        ),
        "revoke_button": "撤回我的同意",
        "revoked_title": "您的同意已撤回",
        "revoked_body": (
            "我们不会再以您的名义发送任何信件，任何尚待确认的请求也已取消。如果您改变主意，欢迎重新报名。"
        ),
        "join_general": "报名参加所有紧急行动",
        "join_again": "重新填写表单",
        "mail_subject": "请确认：以您的名义发送信件",
        "mail_body": (
            "{name}，您好：\n\n"
            "有人（很可能是您本人）请求 {org} 以您的名义为{what}发送信件。\n\n"
            "如需确认，请打开以下链接并按下“确认”按钮。链接在 48 小时内有效：\n"
            "{confirm}\n\n"
            "如果这不是您本人的请求，您无需做任何事：未经您确认，我们不会以您的名义发送任何信件，"
            "此请求将自动失效。\n\n"
            "您可以随时通过以下链接撤回同意，现在或以后均可：\n"
            "{revoke}\n\n"
            "感谢您为身处危险的人们挺身而出。\n"
            "{org}\n"
        ),
        "what_all": "所有紧急行动",
        "what_tags": "以下运动（{tags}）",
        "what_action": "行动“{title}”",
    },
}
