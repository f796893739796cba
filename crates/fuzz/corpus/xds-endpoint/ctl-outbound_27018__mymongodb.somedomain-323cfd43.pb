
$outbound|27018||mymongodb.somedomain6


2.2.2.2ŠÓ"


3.3.3.3ŠÓ"