// m3ae: included by ProcessGroupGloo.hpp; nothing in it is needed to parse that header.
#pragma once
